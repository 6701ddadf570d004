"""Tests for espnet_pathways.pruning on tiny plain-torch modules (no ESPnet needed)."""

from __future__ import annotations

import math
from typing import Callable

import pytest
import torch
from torch import nn
from torch.func import functional_call

from espnet_pathways.masks import masked_parameters, prunable_parameter_names
from espnet_pathways.pruning import (
    IMPSchedule,
    MaskedUpdate,
    frozen_indices,
    lth_rewind_,
    magnitude_prune,
    random_masks,
    random_scores,
    sparsity_of,
)


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(4, 6)
        self.conv = nn.Conv1d(6, 6, 3, padding=1)
        self.lstm = nn.LSTM(6, 5, batch_first=True)
        self.out = nn.Linear(5, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, 4)
        h = torch.relu(self.inp(x))
        h = self.conv(h.transpose(1, 2)).transpose(1, 2)
        h, _ = self.lstm(h)
        return self.out(h)


def weights_of(model: nn.Module) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach() for n in prunable_parameter_names(model)}


def removed(mask: dict[str, torch.Tensor]) -> int:
    return sum(int((~m).sum()) for m in mask.values())


@pytest.fixture
def model() -> Tiny:
    torch.manual_seed(0)
    return Tiny()


# ----------------------------------------------------------------------------- magnitude


def test_magnitude_prune_global_keeps_largest() -> None:
    w = {"a": torch.tensor([[0.1, -5.0], [0.3, 2.0]]), "b": torch.tensor([-0.2, 4.0, 0.05])}
    mask = magnitude_prune(w, 3 / 7, "global")
    assert mask["a"].tolist() == [[False, True], [True, True]]
    assert mask["b"].tolist() == [False, True, False]


def test_magnitude_prune_exact_counts_and_ties(model: Tiny) -> None:
    w = weights_of(model)
    total = sum(t.numel() for t in w.values())
    for s in (0.0, 0.1, 0.333, 0.706, 0.95, 1.0):
        mask = magnitude_prune(w, s, "global")
        assert removed(mask) == round(s * total)
        assert sparsity_of(mask) == pytest.approx(round(s * total) / total)
        per = magnitude_prune(w, s, "per_tensor")
        for n, t in w.items():
            assert abs(int((~per[n]).sum()) - s * t.numel()) <= 1
    ties = {"w": torch.ones(10)}  # all equal: removed in index order, deterministically
    assert magnitude_prune(ties, 0.3)["w"].tolist() == [False] * 3 + [True] * 7


def test_magnitude_prune_validates() -> None:
    with pytest.raises(ValueError):
        magnitude_prune({"w": torch.ones(3)}, 1.5)
    with pytest.raises(ValueError):
        magnitude_prune({"w": torch.ones(3)}, 0.5, "layerwise")  # type: ignore[arg-type]


@pytest.mark.parametrize("scope", ["global", "per_tensor"])
def test_imp_reaches_target_and_pruned_stay_pruned(model: Tiny, scope: str) -> None:
    sched = IMPSchedule(target_sparsity=0.7, prune_fraction=0.2, prune_every=10, start_step=5)
    # 1 - 0.8^k: 0.2, 0.36, 0.488, 0.5904, 0.67232, then capped to 0.7
    assert sched.num_rounds == 6
    assert sched.rounds()[:5] == pytest.approx([1 - 0.8**k for k in range(1, 6)])
    assert sched.rounds()[-1] == 0.7 and sched.sparsity_after_round(99) == 0.7
    assert sched.total_steps_to_target == 65
    due = [s for s in range(200) if sched.due(s)]
    assert due == [15, 25, 35, 45, 55, 65]

    w = weights_of(model)
    total = sum(t.numel() for t in w.values())
    mask = None
    g = torch.Generator().manual_seed(0)
    for step in range(200):
        if not sched.due(step):
            continue
        # training moves the weights; pruned ones could grow large again but must stay out
        w = {n: t + 0.5 * torch.randn(t.shape, generator=g) for n, t in w.items()}
        new = magnitude_prune(w, sched.sparsity_at(step), scope, current=mask)
        if mask is not None:
            for n in w:
                assert not torch.any(new[n] & ~mask[n]), "a pruned weight was revived"
        mask = new
    assert mask is not None
    if scope == "global":
        assert removed(mask) == round(0.7 * total)
    else:
        for n, t in w.items():
            assert abs(int((~mask[n]).sum()) - 0.7 * t.numel()) <= 1


def test_schedule_edge_cases() -> None:
    assert IMPSchedule(0.5, 1.0, 7).rounds() == [0.5]
    none = IMPSchedule(0.0, 0.2, 7)
    assert none.num_rounds == 0 and not any(none.due(s) for s in range(50))
    assert IMPSchedule(0.36, 0.2, 1).rounds() == pytest.approx([0.2, 0.36])
    with pytest.raises(ValueError):
        IMPSchedule(0.5, 0.0, 10)


# ----------------------------------------------------------------------------- random


@pytest.mark.parametrize("scope", ["global", "per_tensor"])
def test_random_masks_sparsity_and_seed(scope: str) -> None:
    shapes = {"a": torch.Size([7, 11]), "b": torch.Size([3, 5, 2]), "c": torch.Size([13])}
    m1 = random_masks(shapes, 0.706, scope, seed=1)
    assert {n: m.shape for n, m in m1.items()} == shapes
    if scope == "global":
        assert removed(m1) == round(0.706 * 120)
    else:
        assert all(int((~m1[n]).sum()) == round(0.706 * math.prod(s)) for n, s in shapes.items())
    m1_again = random_masks(shapes, 0.706, scope, seed=1)
    assert all(torch.equal(m1[n], m1_again[n]) for n in shapes)
    m2 = random_masks(shapes, 0.706, scope, seed=2)
    assert any(not torch.equal(m1[n], m2[n]) for n in shapes)


def test_random_scores_with_layer_sparsity_prune_each_tensor_to_its_share() -> None:
    """Layer-matched random pruning: global pruning of the scores to the reference's
    overall sparsity removes exactly each tensor's reference count, at random positions;
    an earlier round removes the same share of every tensor's count; a tensor the
    reference leaves whole is never pruned."""
    shapes = {"a": torch.Size([10, 20]), "b": torch.Size([50]), "c": torch.Size([4, 5])}
    layers = {"a": 0.9, "b": 0.2, "c": 0.0}  # 180 + 10 + 0 of 270 weights
    scores = random_scores(shapes, seed=3, layer_sparsity=layers)
    final = magnitude_prune(scores, 190 / 270)
    assert {n: int((~m).sum()) for n, m in final.items()} == {"a": 180, "b": 10, "c": 0}
    half = magnitude_prune(scores, 95 / 270)
    assert {n: int((~m).sum()) for n, m in half.items()} == {"a": 90, "b": 5, "c": 0}
    nested = magnitude_prune(scores, 190 / 270, current=half)
    assert all(torch.equal(nested[n], final[n]) for n in shapes)
    other = magnitude_prune(random_scores(shapes, seed=4, layer_sparsity=layers), 190 / 270)
    assert not torch.equal(other["a"], final["a"])  # positions depend on the seed
    uniform = magnitude_prune(random_scores(shapes, seed=3), 190 / 270)
    assert int((~uniform["c"]).sum()) > 0  # without it every tensor loses about 70 %
    with pytest.raises(KeyError, match="no entry for"):
        random_scores(shapes, layer_sparsity={"a": 0.5})


# ----------------------------------------------------------------------------- LTH


def test_lth_rewind(model: Tiny) -> None:
    early = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # "training"
    mask = magnitude_prune(weights_of(model), 0.5)
    lth_rewind_(model, mask, early)
    params = dict(model.named_parameters())
    for n, m in mask.items():
        assert torch.equal(params[n][m], early[n][m])  # survivors rewound
        assert torch.all(params[n][~m] == 0)  # pruned weights zero
    assert torch.equal(params["inp.bias"], early["inp.bias"] + 1)  # not masked: untouched
    lth_rewind_(model, mask, early, all_parameters=True)
    assert torch.equal(params["inp.bias"], early["inp.bias"])


# ----------------------------------------------------------------------------- MaskedUpdate

OPTIMIZERS: dict[str, Callable[[list[nn.Parameter]], torch.optim.Optimizer]] = {
    "adam_l2": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=0.1),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "sgd_momentum": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=0.1),
}


def language_step(model: Tiny, mask: dict[str, torch.Tensor], seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 5, 4, generator=g)
    model.zero_grad(set_to_none=True)
    functional_call(model, masked_parameters(model, mask), (x,)).pow(2).mean().backward()


def setup(model: Tiny, make_opt: Callable) -> tuple[dict, dict, dict, torch.optim.Optimizer, MaskedUpdate]:
    params = dict(model.named_parameters())
    shapes = {n: params[n].shape for n in prunable_parameter_names(model)}
    m_a, m_b = random_masks(shapes, 0.6, seed=1), random_masks(shapes, 0.6, seed=2)
    opt = make_opt(list(model.parameters()))
    masked = {n: params[n] for n in shapes}
    return params, m_a, m_b, opt, MaskedUpdate(masked, opt)


def elementwise_state(opt: torch.optim.Optimizer, p: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in opt.state[p].items() if torch.is_tensor(v) and v.shape == p.shape}


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("warm", [True, False], ids=["warm_state", "fresh_state"])
def test_masked_update_freezes_foreign_weights(model: Tiny, opt_name: str, warm: bool) -> None:
    params, m_a, m_b, opt, mu = setup(model, OPTIMIZERS[opt_name])
    union = {n: m_a[n] | m_b[n] for n in m_a}
    if warm:  # a mixed batch first, so both languages have momentum / Adam moments
        language_step(model, m_a, seed=0)
        language_step_b = {n: p.grad.clone() for n, p in params.items()}
        language_step(model, m_b, seed=1)
        for n, p in params.items():
            p.grad += language_step_b[n]
        with mu.guard(union):
            opt.step()

    before = {n: params[n].detach().clone() for n in m_a}
    state_before = {n: elementwise_state(opt, params[n]) for n in m_a}
    language_step(model, m_a, seed=3)  # a language-a batch
    with mu.guard(m_a):
        opt.step()

    moved_any = False
    for n, m in m_a.items():
        p = params[n].detach()
        assert torch.equal(p[~m], before[n][~m]), f"{n}: weight outside m_a moved"
        moved_any |= bool((p[m] != before[n][m]).any())
        after = elementwise_state(opt, params[n])
        assert after, f"{opt_name} keeps no elementwise state?"
        for k, v in after.items():
            old = state_before[n].get(k, torch.zeros_like(v))
            assert torch.equal(v[~m], old[~m]), f"{n}.{k}: optimizer state outside m_a changed"
    assert moved_any, "weights in m_a did not move"


@pytest.mark.parametrize("opt_name", ["adam_l2", "sgd_momentum"])
def test_without_guard_foreign_weights_would_move(model: Tiny, opt_name: str) -> None:
    """Control: masking gradients alone is not enough (weight decay / momentum)."""
    params, m_a, m_b, opt, _ = setup(model, OPTIMIZERS[opt_name])
    foreign = {n: m_b[n] & ~m_a[n] for n in m_a}
    before = {n: params[n].detach().clone() for n in m_a}
    language_step(model, m_a, seed=3)
    opt.step()
    assert any((params[n][foreign[n]] != before[n][foreign[n]]).any() for n in m_a)


def test_masked_update_via_optimizer_hooks(model: Tiny) -> None:
    params, m_a, _, opt, mu = setup(model, OPTIMIZERS["adamw"])
    owned: dict[str, torch.Tensor] | None = m_a
    handle = mu.register_hooks(lambda: frozen_indices(owned))
    before = {n: params[n].detach().clone() for n in m_a}
    language_step(model, m_a, seed=3)
    opt.step()
    for n, m in m_a.items():
        assert torch.equal(params[n][~m], before[n][~m])
        assert torch.any(params[n][m] != before[n][m])
    handle.remove()
    language_step(model, m_a, seed=4)
    opt.step()  # hooks removed: AdamW decay now moves the foreign weights
    assert any(torch.any(params[n][~m] != before[n][~m]) for n, m in m_a.items())


def test_weights_outside_union_stay_zero(model: Tiny) -> None:
    params, m_a, m_b, opt, mu = setup(model, OPTIMIZERS["adam_l2"])
    union = {n: m_a[n] | m_b[n] for n in m_a}
    with torch.no_grad():
        for n, m in union.items():
            params[n].mul_(m)
    for step in range(4):
        mask = m_a if step % 2 == 0 else m_b
        language_step(model, mask, seed=step)
        with mu.guard(mask):
            opt.step()
    for n, m in union.items():
        assert torch.all(params[n][~m] == 0)
