"""The two RNN-T loss implementations compute the same loss and the same gradients."""
from __future__ import annotations

import pytest
import torch

from helpers import tiny_batch, tiny_model

from espnet_pathways.rnnt_loss import rnnt_loss, rnnt_loss_pytorch


def lattice(seed=0, B=3, T=9, U=5, V=7):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, U + 1, V, generator=g) * 2
    targets = torch.randint(1, V, (B, U), generator=g, dtype=torch.int32)
    t_len = torch.tensor([T, T - 3, 4][:B], dtype=torch.int32)
    u_len = torch.tensor([U, 2, 0][:B], dtype=torch.int32)
    return logits, targets, t_len, u_len


def by_hand(logits, target, T, U):
    """The forward-variable recursion over the (t, u) lattice, one cell at a time."""
    lp = logits.log_softmax(-1)
    alpha = torch.full((T, U + 1), float("-inf"), dtype=torch.float64)
    alpha[0, 0] = 0.0
    for t in range(T):
        for u in range(U + 1):
            if t == 0 and u == 0:
                continue
            a = alpha[t - 1, u] + lp[t - 1, u, 0] if t > 0 else float("-inf")
            b = alpha[t, u - 1] + lp[t, u - 1, target[u - 1]] if u > 0 else float("-inf")
            alpha[t, u] = torch.logaddexp(torch.as_tensor(a), torch.as_tensor(b))
    return -(alpha[T - 1, U] + lp[T - 1, U, 0])


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_pytorch_loss_equals_torchaudio_loss_and_gradients(reduction):
    logits, targets, t_len, u_len = lattice()
    results = {}
    for impl in ("torchaudio", "pytorch"):
        x = logits.clone().requires_grad_(True)
        loss = rnnt_loss(x, targets, t_len, u_len, reduction=reduction, implementation=impl)
        loss.sum().backward()
        results[impl] = (loss.detach(), x.grad)
    assert torch.allclose(results["pytorch"][0], results["torchaudio"][0], atol=1e-3, rtol=1e-5)
    assert torch.allclose(results["pytorch"][1], results["torchaudio"][1], atol=1e-5)


def test_pytorch_loss_matches_the_lattice_recursion_with_padding():
    logits, targets, t_len, u_len = lattice(seed=1)
    loss = rnnt_loss_pytorch(logits, targets, t_len, u_len, reduction="none")
    for b in range(logits.size(0)):
        T, U = int(t_len[b]), int(u_len[b])
        expected = by_hand(logits[b].double(), targets[b], T, U)
        assert abs(float(loss[b]) - float(expected)) < 1e-3, b


def test_padding_does_not_change_the_loss_or_leak_gradient():
    logits, targets, t_len, u_len = lattice(seed=2, B=1)
    t_len, u_len = torch.tensor([6]), torch.tensor([3])
    x = logits.clone().requires_grad_(True)
    rnnt_loss_pytorch(x, targets, t_len, u_len).backward()
    assert x.grad[:, 6:].abs().max() == 0 and x.grad[:, :, 4:].abs().max() == 0
    trimmed = rnnt_loss_pytorch(logits[:, :6, :4], targets[:, :3], t_len, u_len)
    assert torch.allclose(trimmed, rnnt_loss_pytorch(logits, targets, t_len, u_len))


def test_bad_arguments_are_clear_errors():
    logits, targets, t_len, u_len = lattice()
    with pytest.raises(ValueError, match="out of range"):
        rnnt_loss_pytorch(logits, targets, t_len + 1, u_len)
    with pytest.raises(ValueError, match="targets shape"):
        rnnt_loss_pytorch(logits, targets[:, :2], t_len, u_len)
    with pytest.raises(ValueError, match="unknown RNN-T loss implementation 'warp'"):
        rnnt_loss(logits, targets, t_len, u_len, implementation="warp")


def test_model_conf_selects_the_implementation_and_both_train_alike():
    batch = tiny_batch([0, 1, 2, 3])
    losses, grads = {}, {}
    for impl in ("torchaudio", "pytorch"):
        model = tiny_model(model_conf={"rnnt_loss_impl": impl, "auxiliary_ctc_weight": 0.0})
        assert model.rnnt_loss_impl == impl
        loss, _, _ = model(**batch)
        loss.backward()
        losses[impl] = loss.detach()
        grads[impl] = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert torch.allclose(losses["pytorch"], losses["torchaudio"], rtol=1e-4)
    for name, g in grads["torchaudio"].items():
        assert torch.allclose(grads["pytorch"][name], g, atol=1e-5, rtol=1e-3), name
    with pytest.raises(ValueError, match="rnnt_loss_impl='warp'"):
        tiny_model(model_conf={"rnnt_loss_impl": "warp"})
