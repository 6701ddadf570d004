"""torchaudio's Emformer as an encoder of ESPnet's transducer (``espnet2.asr_transducer``).

:class:`EmformerEncoder` exposes the interface that ``ESPnetASRTransducerModel`` and the
transducer ``Speech2Text`` use of ESPnet's :class:`~espnet2.asr_transducer.encoder.encoder.
Encoder` (it subclasses it so that the model's typeguard check ``encoder: Encoder`` passes,
but does not run its constructor):

* ``output_size`` (int), ``embed.subsampling_factor`` (int), ``dynamic_chunk_training``
  (always ``False``: Emformer is trained with its own block-processing attention mask);
* ``forward(x, x_len) -> (out, out_len)``: whole utterances (training, offline decoding),
  :meth:`torchaudio.models.Emformer.forward` on the utterance padded with
  ``right_context_length`` zero frames;
* ``reset_cache(left_context, device)`` and ``stream_frames(emb, is_final) -> out``:
  streaming with :meth:`torchaudio.models.Emformer.infer`, one call per segment, the
  Emformer states and the frames still waiting for their right context kept in the
  module between calls;
* ``chunk_forward(x, x_len, processed_frames, left_context) -> out``: the same on the
  feature chunks of ESPnet's ``OnlineAudioProcessor``.

Input layer: frame stacking (``subsampling_factor`` consecutive feature frames are
concatenated) and a linear projection, as torchaudio's Emformer RNN-T does.  Stacking
has no receptive field across groups, so streaming needs no input-layer context.

Streaming is exact
------------------
``forward`` runs torchaudio's offline Emformer, whose attention mask restricts each
segment of ``segment_length`` frames to its ``left_context_length`` frames of left
context, itself, its own ``right_context_length`` look-ahead frames (and the memory
bank): the block processing ``infer`` does.  ``stream_frames`` calls ``infer`` on each
segment and its look-ahead once they have arrived, and at the end of the stream pads the
last (possibly short) segment with the zero look-ahead ``forward`` pads the utterance
with; so the streamed output equals ``forward`` on the same frames, to float rounding
(``tests/test_emformer.py``, ``tests/test_streaming.py``).  The offline ``forward`` is
the reference; nothing in it had to change.

``PathwaySpeech2Text`` feeds ``stream_frames`` from
:class:`espnet_pathways.streaming.ExactStreamingInput`, whose features and stacked frames
equal the offline ones, so streaming decoding equals offline decoding.

ESPnet's ``OnlineAudioProcessor`` path (``exact_streaming=False``)
------------------------------------------------------------------
``Speech2Text.streaming_decode`` hands ``chunk_forward`` feature chunks made by
``OnlineAudioProcessor.compute_features``: every chunk after the first *starts with the
last* ``2 * subsampling_factor + 3`` *frames of the previous chunk* (context for ESPnet's
convolutional input layer).  ``chunk_forward`` drops that overlap
(``stream_overlap_frames``, capped at the previous chunk's length), stacks the new frames
and passes them to ``stream_frames``.  ESPnet does not pass ``is_final`` to the encoder,
so the caller must: ``chunk_forward(..., is_final=True)`` or ``encoder.final_chunk =
True`` before the last ``streaming_decode`` call (``PathwaySpeech2Text`` does); without
it the last frames are never emitted.  This path equals ``forward`` on the features the
processor produced, *not* on the whole utterance's features: the processor (ESPnet
202511) skips one feature frame at each chunk boundary (frame ``62`` of the utterance
with ``hop_length 160`` and ``decoding_window 640``, etc.), zero-pads the audio of the
final chunk to a full ``decoding_window``, and ``utterance_mvn`` normalises each chunk on
its own.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from typeguard import typechecked

from espnet2.asr_transducer.encoder.encoder import Encoder
from espnet2.asr_transducer.utils import TooShortUttError


class StackingSubsampling(torch.nn.Module):
    """Stack ``subsampling_factor`` frames, then project: ``(B, T, F) -> (B, T // s, D)``.

    A trailing incomplete group of fewer than ``subsampling_factor`` frames is dropped.
    It is called like ESPnet's ``ConvInput`` (``embed(x, mask) -> (x, mask)``, with
    ``subsampling_factor`` and ``min_frame_length``) so that
    :class:`espnet_pathways.streaming.ExactStreamingInput` feeds either input layer the
    same way: output ``k`` reads input frames ``[s*k, s*k + s)``.
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        subsampling_factor: int,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.subsampling_factor = subsampling_factor
        self.input_size = input_size
        self.linear = torch.nn.Linear(input_size * subsampling_factor, output_size)
        self.dropout = torch.nn.Dropout(dropout_rate)

    @property
    def min_frame_length(self) -> int:
        """Fewest input frames that give one output frame."""
        return self.subsampling_factor

    def forward(
        self, x: torch.Tensor, mask: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Stack and project ``x`` (B, T, F); ``mask`` (B, T), if given, is subsampled
        to the last frame of each group (a group is valid iff all its frames are)."""
        s = self.subsampling_factor
        b, t, f = x.shape
        n = t // s
        out = self.dropout(self.linear(x[:, : n * s].reshape(b, n, s * f)))
        return out, (None if mask is None else mask[:, s - 1 : n * s : s])


class EmformerEncoder(Encoder):
    """Streaming Emformer encoder for ESPnet's transducer (see the module docstring).

    Args:
        input_size: feature dimension (the frontend's output size).
        output_size: Emformer model dimension, which is also the encoder output size.
        num_heads: attention heads per layer (must divide ``output_size``).
        ffn_dim: feed-forward hidden dimension.
        num_layers: Emformer layers.
        segment_length: frames per Emformer segment, after subsampling.
        right_context_length: look-ahead frames per segment, after subsampling.
        left_context_length: left context frames per segment, after subsampling
            (torchaudio's default of 0 lets a segment see nothing before itself except
            memory; ESPnet's ``--left_context`` decoding option does not change it).
        max_memory_size: number of Emformer memory vectors (0: no memory bank).
        subsampling_factor: stride of the stacking input layer.
        dropout_rate: dropout of the input layer and of the Emformer layers.
        activation: feed-forward activation, ``relu``, ``gelu`` or ``silu``.
        tanh_on_mem: tanh (instead of clamping) on the memory vectors.
        weight_init_scale_strategy: torchaudio's ``depthwise``, ``constant`` or ``None``.
        output_layer_norm: a LayerNorm on the encoder output.
        stream_overlap_frames: feature frames that each streaming chunk after the first
            repeats from the previous one; default ``2 * subsampling_factor + 3``, which is
            what ESPnet's ``OnlineAudioProcessor`` repeats.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        num_heads: int = 4,
        ffn_dim: int = 1024,
        num_layers: int = 8,
        segment_length: int = 4,
        right_context_length: int = 1,
        left_context_length: int = 30,
        max_memory_size: int = 0,
        subsampling_factor: int = 6,
        dropout_rate: float = 0.1,
        activation: str = "relu",
        tanh_on_mem: bool = False,
        weight_init_scale_strategy: Optional[str] = "depthwise",
        output_layer_norm: bool = True,
        stream_overlap_frames: Optional[int] = None,
    ) -> None:
        # ESPnet's Encoder.__init__ builds a Conformer from body_conf: skip it.
        torch.nn.Module.__init__(self)
        from torchaudio.models import Emformer

        if output_size % num_heads != 0:
            raise ValueError(f"output_size {output_size} is not divisible by num_heads {num_heads}")
        if segment_length < 1 or right_context_length < 0 or left_context_length < 0:
            raise ValueError("segment_length must be >= 1; context lengths must be >= 0")
        if subsampling_factor < 1:
            raise ValueError("subsampling_factor must be >= 1")
        if activation not in ("relu", "gelu", "silu"):
            raise ValueError(f"activation must be relu, gelu or silu, not {activation!r}")

        self.embed = StackingSubsampling(input_size, output_size, subsampling_factor, dropout_rate)
        self.emformer = Emformer(
            input_dim=output_size,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            segment_length=segment_length,
            dropout=dropout_rate,
            activation=activation,
            left_context_length=left_context_length,
            right_context_length=right_context_length,
            max_memory_size=max_memory_size,
            weight_init_scale_strategy=weight_init_scale_strategy,
            tanh_on_mem=tanh_on_mem,
        )
        self.after_norm = torch.nn.LayerNorm(output_size) if output_layer_norm else torch.nn.Identity()

        self.output_size = output_size
        self.segment_length = segment_length
        self.right_context_length = right_context_length
        self.left_context_length = left_context_length
        self.stream_overlap_frames = (
            2 * subsampling_factor + 3 if stream_overlap_frames is None else stream_overlap_frames
        )
        # Read (and set to False) by Speech2Text; Emformer does not use it.
        self.dynamic_chunk_training = False
        # ESPnet's Encoder attributes, for code that reads them.
        self.short_chunk_threshold = 0.75
        self.short_chunk_size = 25
        self.num_left_chunks = 0

        #: Set to True before the last streaming chunk to flush the buffered frames.
        self.final_chunk = False
        self._feat_buf: Optional[torch.Tensor] = None
        self._emb_buf: Optional[torch.Tensor] = None
        self._states: Optional[List[List[torch.Tensor]]] = None
        self._prev_chunk_len: Optional[int] = None

    # ---------------------------------------------------------------- training
    @property
    def subsampling_factor(self) -> int:
        return self.embed.subsampling_factor

    def output_lengths(self, x_len: torch.Tensor) -> torch.Tensor:
        """Encoder output lengths for feature lengths ``x_len``."""
        return torch.div(x_len, self.subsampling_factor, rounding_mode="floor")

    def forward(self, x: torch.Tensor, x_len: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Encode whole utterances.

        Args:
            x: features (B, T, F).
            x_len: feature lengths (B,).

        Returns:
            out: (B, T_out, D) with ``T_out = max(x_len) // subsampling_factor``.
            out_len: (B,), ``x_len // subsampling_factor``.
        """
        s = self.subsampling_factor
        if x.size(1) < s:
            raise TooShortUttError(
                f"has {x.size(1)} frames and is too short for subsampling "
                f"(it needs at least {s} frames), return empty results",
                x.size(1),
                s,
            )
        out_len = self.output_lengths(x_len.to(x.device))
        t_out = int(out_len.max())
        if t_out == 0:
            raise TooShortUttError(
                f"has {int(x_len.max())} frames and is too short for subsampling "
                f"(it needs at least {s} frames), return empty results",
                int(x_len.max()),
                s,
            )
        emb, _ = self.embed(x[:, : t_out * s])
        emb = emb.masked_fill(self._pad_mask(out_len, t_out).unsqueeze(-1), 0.0)
        emb = torch.nn.functional.pad(emb, (0, 0, 0, self.right_context_length))
        out, _ = self.emformer(emb, out_len)
        return self.after_norm(out), out_len

    @staticmethod
    def _pad_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
        return torch.arange(t, device=lengths.device).unsqueeze(0) >= lengths.unsqueeze(1)

    # --------------------------------------------------------------- streaming
    def reset_cache(self, left_context: int, device: torch.device) -> None:
        """Start a new stream.

        ``left_context`` (ESPnet's decoding option) is ignored: the Emformer's left
        context is its ``left_context_length``, fixed at training time.
        """
        self.final_chunk = False
        self._feat_buf = None
        self._emb_buf = None
        self._states = None
        self._prev_chunk_len = None

    def chunk_forward(
        self,
        x: torch.Tensor,
        x_len: torch.Tensor,
        processed_frames: Optional[torch.Tensor] = None,
        left_context: int = 32,
        is_final: bool = False,
    ) -> torch.Tensor:
        """Encode one chunk of ESPnet's ``OnlineAudioProcessor`` (batch size 1).

        This is ESPnet's streaming path (``PathwaySpeech2Text(exact_streaming=False)``);
        the default path feeds :meth:`stream_frames` from
        :class:`espnet_pathways.streaming.ExactStreamingInput` instead.

        Args:
            x: feature chunk from ``OnlineAudioProcessor`` (1, T_chunk, F); every chunk
                after the first starts with ``stream_overlap_frames`` frames of the
                previous chunk, which are skipped.
            x_len: (1,) its length.
            processed_frames: unused (ESPnet's Conformer uses it for its cache mask).
            left_context: unused (see :meth:`reset_cache`).
            is_final: flush the buffered frames (also when ``self.final_chunk`` is set).

        Returns:
            out: the encoder frames completed by this chunk (1, N, D); N may be 0.
        """
        if x.size(0) != 1:
            raise ValueError(f"chunk_forward decodes one stream at a time, got batch {x.size(0)}")
        final = bool(is_final or self.final_chunk)
        n = int(x_len.reshape(-1)[0]) if x_len is not None else x.size(1)
        x = x[:, :n]
        overlap = 0 if self._prev_chunk_len is None else min(self.stream_overlap_frames, self._prev_chunk_len)
        new = x[:, overlap:]

        s = self.subsampling_factor
        feats = new if self._feat_buf is None else torch.cat([self._feat_buf, new], dim=1)
        n_groups = feats.size(1) // s
        emb, _ = self.embed(feats[:, : n_groups * s])
        out = self.stream_frames(emb, is_final=final)
        if final:
            self.reset_cache(left_context, x.device)
        else:
            self._prev_chunk_len = n
            self._feat_buf = feats[:, n_groups * s :]
        return out

    def stream_frames(self, emb: torch.Tensor, is_final: bool = False) -> torch.Tensor:
        """Encode input-layer frames as they arrive, with ``Emformer.infer`` (batch 1).

        ``emb`` (1, N, D) are the next ``N`` outputs of ``self.embed`` (N may be 0).  Each
        segment of ``segment_length`` frames is encoded, in one ``infer`` call carrying
        the Emformer state (left-context keys/values, memory), as soon as its
        ``right_context_length`` look-ahead frames are there; the rest waits in the
        module.  ``is_final`` flushes it: the last (possibly short) segment gets zero
        frames as look-ahead, as :meth:`forward` pads the utterance, and the stream state
        is cleared.  So the outputs of a stream, concatenated, equal :meth:`forward` on
        the same frames to float rounding.

        Returns:
            the encoder frames completed by ``emb`` (1, M, D); M may be 0.
        """
        if emb.size(0) != 1:
            raise ValueError(f"stream_frames encodes one stream at a time, got batch {emb.size(0)}")
        buf = self._emb_buf
        if emb.size(1) > 0:
            buf = emb if buf is None else torch.cat([buf, emb], dim=1)
        if buf is None:  # nothing yet (``emb`` may be a placeholder of another shape)
            buf = self.embed.linear.weight.new_zeros(1, 0, self.output_size)
        seg, rc = self.segment_length, self.right_context_length
        outs = []
        while buf.size(1) >= seg + rc:
            outs.append(self._infer(buf[:, : seg + rc], seg))
            buf = buf[:, seg:]
        if is_final:
            while buf.size(1) > 0:
                u = min(seg, buf.size(1))
                look_ahead = buf[:, u : u + rc]
                block = torch.cat(
                    [
                        buf[:, :u],
                        buf.new_zeros(1, seg - u, buf.size(2)),
                        look_ahead,
                        buf.new_zeros(1, rc - look_ahead.size(1), buf.size(2)),
                    ],
                    dim=1,
                )
                outs.append(self._infer(block, u))
                buf = buf[:, u:]
            self._emb_buf = None
            self._states = None
        else:
            self._emb_buf = buf
        if not outs:
            return buf.new_zeros(1, 0, self.output_size)
        return self.after_norm(torch.cat(outs, dim=1))

    def _infer(self, block: torch.Tensor, valid: int) -> torch.Tensor:
        """One ``Emformer.infer`` call on (1, segment + right context) frames, of which the
        first ``valid`` segment frames are real (the rest of the segment is padding)."""
        seg, rc = self.segment_length, self.right_context_length
        if valid == seg:
            lengths = torch.full((1,), seg + rc, dtype=torch.long, device=block.device)
            out, _, self._states = self.emformer.infer(block, lengths, self._states)
            return out
        # torchaudio builds no padding mask for batch size 1, so the padded frames of a
        # short last segment would be attended to.  Run it beside a full-length dummy: with
        # batch 2 the key padding mask comes from ``lengths``.
        states = None
        if self._states is not None:
            states = [[t.expand(t.size(0), 2, *t.shape[2:]).contiguous() for t in layer]
                      for layer in self._states]
        lengths = torch.tensor([seg + rc, valid + rc], dtype=torch.long, device=block.device)
        out, _, _ = self.emformer.infer(block.expand(2, -1, -1), lengths, states)
        self._states = None  # the stream ends with a short segment
        return out[1:, :valid]
