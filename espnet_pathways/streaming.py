"""Chunk-by-chunk encoder input that equals the full-utterance encoder input.

ESPnet's streaming path (``OnlineAudioProcessor`` + ``Encoder.chunk_forward``) computes
the features of each chunk with a fixed overlap and then drops the first and last
subsampled frame of every chunk.  The bookkeeping does not line up with the stride-4
convolutional input layer: a 640 ms chunk gives 15 encoder frames instead of 16, the
first chunk 12, and the last chunk is padded with zeros -- a 1.9 s utterance gives 42
encoder frames streamed against 46 offline.  Every chunk boundary drops audio the model
never sees, which shows up as deleted words.

:class:`ExactStreamingInput` does the same job exactly:

* **features** -- frame ``j`` of ESPnet's STFT (``center=True``) covers samples
  ``[j*hop - n_fft/2, j*hop + n_fft/2)``.  Each call computes the frames whose window is
  complete, from a segment that starts ``ceil(n_fft/2 / hop)`` frames early so no frame
  it keeps touches the segment's padded edge.  The final call pads the end the way the
  offline frontend does.  Streamed frames are the offline frames (same values, same count).
* **input layer** -- with a stride-``s`` input layer whose output ``k`` reads input
  frames ``[s*k, s*k + min_frame_length)`` (ESPnet's valid-convolution ``ConvInput``; the
  Emformer's frame stacking, ``min_frame_length = s``), the feature buffer always starts
  at ``s*k`` for the next output ``k``, so each output is computed once, as offline.
* **encoder body** -- for ESPnet's Conformer, its own ``encoders.chunk_forward`` with its
  left-context cache (attention and causal convolution), unchanged.  For the Emformer,
  :meth:`espnet_pathways.encoders.EmformerEncoder.stream_frames`: one ``Emformer.infer``
  call per segment once its right context has arrived, the last segment flushed at the
  end of the stream with the zero look-ahead that the offline ``forward`` pads.

So for the Conformer the only difference from offline decoding left is the one the model
was trained for (dynamic chunk training: the attention sees the current chunk and
``left_context`` frames), and for the Emformer there is none: its offline forward already
restricts every segment to its left context, itself and its right context, so the
streamed encoder output equals the offline one to float rounding.
``tests/test_streaming.py`` checks features, input frames and encoder output against the
offline computation for both encoders.

It applies to ESPnet's Conformer ``Encoder`` with its non-VGG ``ConvInput`` (the
recipe's encoder) and to :class:`~espnet_pathways.encoders.EmformerEncoder`, with a
frontend with an STFT and global, causal (:class:`~espnet_pathways.normalize.CausalMVN`,
whose running mean the stream carries) or no feature normalisation; other models keep
ESPnet's path (:func:`supports_exact_streaming`).
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from espnet_pathways.encoders import EmformerEncoder
from espnet_pathways.normalize import CausalMVN, StreamState


def supports_exact_streaming(model: torch.nn.Module) -> bool:
    """True for ESPnet's Conformer encoder with a valid-convolution input or the Emformer
    encoder, an STFT frontend and a normalisation that needs no future frame (global MVN,
    :class:`~espnet_pathways.normalize.CausalMVN` or none; an utterance MVN needs the
    whole utterance, so no chunked computation can equal it)."""
    from espnet2.asr_transducer.encoder.blocks.conv_input import ConvInput
    from espnet2.asr_transducer.encoder.encoder import Encoder
    from espnet2.layers.global_mvn import GlobalMVN

    encoder = getattr(model, "encoder", None)
    frontend = getattr(model, "frontend", None)
    stft = getattr(frontend, "stft", None)
    conformer_input = (
        isinstance(encoder, Encoder)
        and isinstance(encoder.embed, ConvInput)
        and not encoder.embed.vgg_like
    )
    return (
        (conformer_input or isinstance(encoder, EmformerEncoder))
        and stft is not None
        and getattr(stft, "center", False)
        and (model.normalize is None or isinstance(model.normalize, GlobalMVN))  # CausalMVN too
    )


def _no_frames() -> torch.Tensor:
    """What a call returns when no new frame is complete: (1, 0, 0)."""
    return torch.zeros(1, 0, 0)


class ExactStreamingInput:
    """Turns audio chunks into the encoder frames of the offline computation.

    Args:
        model: an ESPnet transducer (``frontend``, ``normalize``, ``encoder``) for which
            :func:`supports_exact_streaming` holds.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        if not supports_exact_streaming(model):
            raise ValueError(
                "exact streaming needs ESPnet's Conformer encoder with ConvInput or the "
                "Emformer encoder, an STFT frontend and global, causal or no normalisation"
            )
        self.model = model
        stft = model.frontend.stft
        self.hop = int(stft.hop_length)
        self.half_window = int(stft.n_fft) // 2
        # A kept frame must not reach the reflected padding at the segment's left edge.
        self.lead_frames = math.ceil(self.half_window / self.hop)
        embed = model.encoder.embed
        self.stride = int(embed.subsampling_factor)
        self.min_frames = int(embed.min_frame_length)
        self.reset()

    def reset(self) -> None:
        """Forget the current stream (call between utterances)."""
        self.samples = torch.zeros(0)
        self.samples_start = 0  # global index of self.samples[0]
        self.next_frame = 0  # global index of the next feature frame to emit
        self.feats: Optional[torch.Tensor] = None  # features not yet consumed by the embed
        self.norm_state: Optional[StreamState] = None  # CausalMVN's running mean

    # ------------------------------------------------------------------ features
    def features(self, chunk: torch.Tensor, is_final: bool) -> torch.Tensor:
        """Normalised feature frames that became complete with ``chunk``: (1, n, D)."""
        chunk = chunk.reshape(-1).to(torch.float32)
        self.samples = torch.cat([self.samples.to(chunk.device), chunk])
        if is_final:
            last = self.total_samples // self.hop  # offline: 1 + S // hop frames
            if self.total_samples <= self.half_window:
                last = -1  # too short for the STFT's reflected padding, offline too
        else:
            if self.total_samples <= self.half_window:
                return _no_frames()
            last = (self.total_samples - self.half_window) // self.hop
        if last < self.next_frame:
            return _no_frames()
        first_in_segment = max(self.next_frame - self.lead_frames, 0)
        start = first_in_segment * self.hop
        segment = self.samples[start - self.samples_start:]
        feats, feats_len = self.model._extract_feats(
            segment.unsqueeze(0), torch.tensor([segment.numel()], device=segment.device)
        )
        normalize = self.model.normalize
        causal = isinstance(normalize, CausalMVN)
        if normalize is not None:  # per frame; CausalMVN's running mean continues below
            feats, feats_len = (normalize.per_frame if causal else normalize)(feats, feats_len)
        feats = feats[:, self.next_frame - first_in_segment:last - first_in_segment + 1]
        if causal:
            feats, self.norm_state = normalize.stream(feats, self.norm_state)
        self.next_frame = last + 1
        # Keep the samples the next call's segment starts from.
        keep_from = max(self.next_frame - self.lead_frames, 0) * self.hop
        self.samples = self.samples[keep_from - self.samples_start:]
        self.samples_start = keep_from
        return feats

    @property
    def total_samples(self) -> int:
        """Samples received in this stream so far."""
        return self.samples_start + self.samples.numel()

    # ------------------------------------------------------------------ encoder
    def embed(self, feats: torch.Tensor) -> torch.Tensor:
        """Convolutional-input outputs that became complete with ``feats``: (1, n, D)."""
        if feats.size(1) > 0:
            self.feats = feats if self.feats is None else torch.cat([self.feats, feats], dim=1)
        if self.feats is None or self.feats.size(1) < self.min_frames:
            return _no_frames()
        x, _ = self.model.encoder.embed(self.feats, None)
        self.feats = self.feats[:, self.stride * x.size(1):]
        return x

    def encode(
        self,
        x: torch.Tensor,
        processed_frames: torch.Tensor,
        left_context: int,
        is_final: bool = False,
    ) -> torch.Tensor:
        """Encoder frames for the input-layer frames ``x`` (1, n, D); n may be 0.

        Conformer: ESPnet's ``Encoder.chunk_forward`` after the embedding, without its
        trimming (``processed_frames`` and ``left_context`` set its cache mask).  Emformer:
        ``EmformerEncoder.stream_frames`` (segments wait for their right context;
        ``is_final`` flushes the last one), which ignores both.
        """
        encoder = self.model.encoder
        if isinstance(encoder, EmformerEncoder):
            return encoder.stream_frames(x, is_final=is_final)
        if x.size(1) == 0:  # on the encoder's device (``x`` may be a CPU placeholder)
            return next(encoder.parameters()).new_zeros(1, 0, encoder.output_size)
        pos_enc = encoder.pos_enc(x, left_context=left_context)
        processed_mask = (
            torch.arange(left_context, device=x.device).view(1, left_context).flip(1)
            >= processed_frames
        )
        mask = torch.cat(
            [processed_mask, torch.zeros(1, x.size(1), dtype=torch.bool, device=x.device)],
            dim=1,
        )
        return encoder.encoders.chunk_forward(x, pos_enc, mask, left_context=left_context)
