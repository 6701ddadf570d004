"""RNN-T losses the pathway transducer can use.

Two implementations of the same quantity, -log P(y | x) summed over all alignments:

* ``"torchaudio"`` -- :func:`torchaudio.functional.rnnt_loss` (the reference; its CUDA
  kernel is the right choice on a GPU).
* ``"pytorch"`` -- :func:`rnnt_loss_pytorch` below: the forward (alpha) recursion written
  with vectorised PyTorch ops and differentiated by autograd.  On CPU it is several times
  faster than torchaudio's CPU kernel for the small vocabularies of the default recipe
  (``benchmarks/bench_rnnt_loss.py`` prints the ratio; the loss was ~38% of a training
  step with torchaudio).  ``tests/test_rnnt_loss.py`` checks that both give the same loss
  and the same gradients.

Why the pytorch version is fast: for a fixed frame ``t`` the recursion over ``u``

    alpha[t, u] = logaddexp(alpha[t-1, u] + blank[t-1, u], alpha[t, u-1] + emit[t, u-1])

unrolls into a prefix log-sum-exp: with ``a[u] = alpha[t-1, u] + blank[t-1, u]`` and the
prefix sums ``c[u] = sum_{j<u} emit[t, j]``,

    alpha[t, u] = c[u] + logcumsumexp_u(a[u] - c[u]).

So one frame is a handful of whole-tensor ops over (batch, U+1) and the Python loop runs
over frames only, instead of a scalar loop over the (T, U) lattice.
"""
from __future__ import annotations

import torch

LOSS_IMPLEMENTATIONS = ("torchaudio", "pytorch")


def rnnt_loss_pytorch(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    reduction: str = "mean",
) -> torch.Tensor:
    """RNN-T loss from unnormalised joint logits (same contract as torchaudio's).

    Args:
        logits: (B, T, U+1, V) joint-network outputs before the log-softmax.
        targets: (B, U) label ids; padding beyond ``target_lengths`` is ignored.
        logit_lengths: (B,) number of valid frames per utterance.
        target_lengths: (B,) number of labels per utterance.
        blank: id of the blank label.
        reduction: "mean", "sum" or "none".
    """
    if logits.dim() != 4:
        raise ValueError(f"logits must be (B, T, U+1, V), got shape {tuple(logits.shape)}")
    batch, frames, u_plus_1, _ = logits.shape
    if targets.shape != (batch, u_plus_1 - 1):
        raise ValueError(
            f"targets shape {tuple(targets.shape)} does not match logits {tuple(logits.shape)}"
        )
    t_len = logit_lengths.long()
    u_len = target_lengths.long()
    if int(t_len.min()) < 1 or int(t_len.max()) > frames or int(u_len.max()) > u_plus_1 - 1:
        raise ValueError("logit_lengths/target_lengths out of range for the logits' shape")

    log_probs = logits.float().log_softmax(dim=-1)
    blank_lp = log_probs[..., blank]  # (B, T, U+1): leave (t, u) by a blank
    labels = targets.long().clamp(min=0)
    labels = labels[:, None, :, None].expand(batch, frames, u_plus_1 - 1, 1)
    emit_lp = log_probs[:, :, :-1, :].gather(-1, labels).squeeze(-1)  # (B, T, U)

    # Prefix sums of the emissions along u, per frame: c[t, u] = sum_{j<u} emit[t, j].
    prefix = torch.cat([emit_lp.new_zeros(batch, frames, 1), emit_lp.cumsum(dim=-1)], dim=-1)
    # A large negative number, not -inf: -inf - -inf would be NaN in a - c.
    very_negative = torch.finfo(log_probs.dtype).min / 4
    start = log_probs.new_full((batch, u_plus_1), very_negative)
    start[:, 0] = 0.0
    alphas = []
    from_below = start  # alpha[t-1] + blank[t-1]; for t = 0, the start state
    for t in range(frames):
        c = prefix[:, t]
        alpha_t = torch.logcumsumexp(from_below - c, dim=-1) + c
        alphas.append(alpha_t)
        from_below = alpha_t + blank_lp[:, t]
    alpha = torch.stack(alphas, dim=1)  # (B, T, U+1)

    rows = torch.arange(batch, device=logits.device)
    last_t = t_len - 1
    log_likelihood = alpha[rows, last_t, u_len] + blank_lp[rows, last_t, u_len]
    loss = -log_likelihood
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def rnnt_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    logit_lengths: torch.Tensor,
    target_lengths: torch.Tensor,
    blank: int = 0,
    reduction: str = "mean",
    implementation: str = "torchaudio",
) -> torch.Tensor:
    """The RNN-T loss with the chosen implementation (see the module docstring)."""
    if implementation == "pytorch":
        return rnnt_loss_pytorch(
            logits, targets, logit_lengths, target_lengths, blank=blank, reduction=reduction
        )
    if implementation != "torchaudio":
        raise ValueError(
            f"unknown RNN-T loss implementation {implementation!r}; "
            f"choose one of {', '.join(LOSS_IMPLEMENTATIONS)}"
        )
    import torchaudio.functional as taF

    return taF.rnnt_loss(
        logits.float(),
        targets.to(torch.int32),
        logit_lengths.to(device=logits.device, dtype=torch.int32),
        target_lengths.to(device=logits.device, dtype=torch.int32),
        blank=blank,
        reduction=reduction,
    )
