"""Causal per-utterance mean normalisation: the streaming counterpart of utterance MVN.

Why: the embedded corpus is judged on voices never heard in training, and a voice (or a
channel) shifts the whole log-mel spectrum of an utterance.  Subtracting the utterance's
own mean removes most of that shift (ESPnet's ``utterance_mvn``), but the full-utterance
mean is not known while the audio streams.  :class:`CausalMVN` subtracts, from frame
``t``, the mean of the frames ``0..t`` seen so far, with ``prior_frames`` frames of the
training data's mean as a prior (Kaldi's online CMVN, ``apply-cmvn-online``, with global
statistics as the prior): after ESPnet's global MVN that mean is zero, so

    y_t = x_t - sum_{s <= t} x_s / (t + 1 + prior_frames),     x = GlobalMVN(features)

Frame ``t`` depends on frames ``<= t`` only, so the offline forward (training, ESPnet's
full-utterance decoding) and the chunk-by-chunk computation of
:class:`espnet_pathways.streaming.ExactStreamingInput` (:meth:`CausalMVN.stream`, which
carries the running sum and count between chunks) give the same frames, and padding at a
batch's end never reaches a real frame.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple, Union

import torch
from typeguard import typechecked

from espnet2.layers.global_mvn import GlobalMVN
from espnet.nets.pytorch_backend.nets_utils import make_pad_mask

#: Running state of one stream: (sum of the globally normalised frames so far (D,),
#: number of frames so far).
StreamState = Tuple[torch.Tensor, int]


class CausalMVN(GlobalMVN):
    """ESPnet's global MVN, then the running per-utterance mean subtracted (module doc).

    A :class:`GlobalMVN` (same statistics, same ``mean``/``std`` buffers, so a state
    dict holds the same keys as a ``global_mvn`` model's) whose :meth:`forward` adds the
    running mean; :meth:`per_frame` is the global part alone, for the streaming input.

    Args:
        stats_file, norm_means, norm_vars, eps: as :class:`GlobalMVN` (``stats_file``:
            stage 4's ``feats_stats.npz``).
        prior_frames: weight of the zero (global) mean, in frames; 0 subtracts the plain
            running mean, which for the first frame is the frame itself.
    """

    @typechecked
    def __init__(
        self,
        stats_file: Union[Path, str],
        norm_means: bool = True,
        norm_vars: bool = True,
        eps: float = 1.0e-20,
        prior_frames: float = 100.0,
    ) -> None:
        if prior_frames < 0:
            raise ValueError(f"prior_frames must be >= 0, got {prior_frames}")
        super().__init__(stats_file, norm_means=norm_means, norm_vars=norm_vars, eps=eps)
        self.prior_frames = float(prior_frames)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, prior_frames={self.prior_frames}"

    def per_frame(
        self, x: torch.Tensor, ilens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The global MVN alone (ESPnet's, which works in place on ``x``)."""
        return super().forward(x, ilens)

    def forward(
        self, x: torch.Tensor, ilens: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """(B, T, D) features -> normalised features (padding set to 0), lengths."""
        x, ilens = self.per_frame(x, ilens)
        running, _ = self._subtract_running_mean(x, x.new_zeros(x.size(0), x.size(-1)), 0)
        if ilens is not None:
            running = running.masked_fill(make_pad_mask(ilens, running, 1), 0.0)
        return running, ilens

    def stream(
        self, x: torch.Tensor, state: Optional[StreamState]
    ) -> Tuple[torch.Tensor, StreamState]:
        """Frames ``x`` (1, n, D), already through :meth:`per_frame`, that continue the
        stream whose running state is ``state`` (None: a new stream) -> the normalised
        frames and the state after them."""
        if state is None:
            state = (x.new_zeros(x.size(-1)), 0)
        total, count = state
        y, total = self._subtract_running_mean(x, total.unsqueeze(0), count)
        return y, (total.squeeze(0), count + x.size(1))

    def _subtract_running_mean(
        self, x: torch.Tensor, total: torch.Tensor, count: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """x (B, n, D) following ``count`` frames whose sum is ``total`` (B, D)."""
        sums = total.unsqueeze(1) + torch.cumsum(x, dim=1)
        frames = torch.arange(1, x.size(1) + 1, device=x.device, dtype=x.dtype) + count
        mean = sums / (frames + self.prior_frames).view(1, -1, 1)
        return x - mean, sums[:, -1] if x.size(1) else total
