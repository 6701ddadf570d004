"""Making masks (magnitude / random / IMP / LTH) and training under them (MaskedUpdate).

Everything here works on plain ``{param name: tensor}`` dicts so that it is independent of
ESPnet: the trainer decides *when* to prune (:class:`IMPSchedule`), this module decides
*what* to keep.  Masks are ``torch.bool`` tensors (``True`` = kept), see ``masks.py``.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Literal, Mapping, Optional

import torch
from torch import Tensor, nn

from espnet_pathways.masks import sparsity_of

__all__ = [
    "IMPSchedule",
    "MaskedUpdate",
    "Scope",
    "frozen_indices",
    "lth_rewind_",
    "magnitude_prune",
    "random_masks",
    "random_scores",
    "sparsity_of",
    "zero_optimizer_state_",
]

Scope = Literal["global", "per_tensor"]
MaskDict = dict[str, Tensor]


def _check(sparsity: float, scope: str) -> None:
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    if scope not in ("global", "per_tensor"):
        raise ValueError(f"scope must be 'global' or 'per_tensor', got {scope!r}")


def _drop_smallest(scores: Tensor, n_remove: int) -> Tensor:
    """Flat bool keep-mask removing the ``n_remove`` lowest scores.

    A stable sort makes ties deterministic: equal scores are removed in index order.
    Scores of ``-inf`` mark weights pruned earlier; they are always removed (pruned weights
    stay pruned), so more than ``n_remove`` go if more than that were already gone.
    """
    n_remove = max(n_remove, int(torch.isneginf(scores).sum()))
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_remove:
        order = torch.sort(scores, stable=True).indices
        keep[order[:n_remove]] = False
    return keep


def magnitude_prune(
    weights: Mapping[str, Tensor],
    sparsity: float,
    scope: Scope = "global",
    current: Optional[Mapping[str, Tensor]] = None,
) -> MaskDict:
    """Keep the largest-``|w|`` weights so that ``round(sparsity * n)`` are removed.

    ``n`` counts all weights of all tensors (``global``) or of each tensor (``per_tensor``,
    hence within one weight of the target per tensor).  Weights already ``False`` in
    ``current`` stay removed and count towards the target; if they alone exceed it, the
    result is just ``current`` (no weight is ever revived here).  Ties are broken by a
    stable sort over the names' order then the flat index, so results are reproducible.

    One flat float32 score vector plus its sort indices are materialised (global scope):
    about 12 bytes per prunable weight, on the weights' device.
    """
    _check(sparsity, scope)
    current = current or {}
    unknown = [n for n in current if n not in weights]
    if unknown:
        raise KeyError(f"current mask names weights that are not given: {unknown}")
    names = list(weights)
    if not names:
        return {}
    device = weights[names[0]].device

    def score(name: str) -> Tensor:
        s = weights[name].detach().to(device=device, dtype=torch.float32).abs().reshape(-1)
        cur = current.get(name)
        if cur is not None:
            if cur.shape != weights[name].shape:
                raise ValueError(
                    f"current mask of {name!r} has shape {tuple(cur.shape)}, "
                    f"weight has {tuple(weights[name].shape)}"
                )
            s = s.masked_fill(~cur.to(device).reshape(-1), -math.inf)
        return s

    if scope == "per_tensor":
        out: MaskDict = {}
        for n in names:
            s = score(n)
            out[n] = _drop_smallest(s, round(sparsity * s.numel())).view(weights[n].shape)
        return out
    flat = torch.cat([score(n) for n in names])
    keep = _drop_smallest(flat, round(sparsity * flat.numel()))
    return _split(keep, {n: weights[n].shape for n in names})


def _split(flat: Tensor, shapes: Mapping[str, torch.Size]) -> MaskDict:
    parts = torch.split(flat, [math.prod(s) for s in shapes.values()])
    return {n: p.view(s) for (n, s), p in zip(shapes.items(), parts)}


def random_masks(
    shapes: Mapping[str, torch.Size],
    sparsity: float,
    scope: Scope = "global",
    seed: int = 0,
) -> MaskDict:
    """Masks removing exactly ``round(sparsity * n)`` weights chosen uniformly at random.

    The "random pathways" baseline of the paper.  Deterministic for a given ``seed`` and
    order of ``shapes`` (a private CPU ``torch.Generator``; global RNG state untouched).
    """
    _check(sparsity, scope)
    gen = torch.Generator().manual_seed(seed)

    def draw(numel: int) -> Tensor:
        keep = torch.ones(numel, dtype=torch.bool)
        keep[torch.randperm(numel, generator=gen)[: round(sparsity * numel)]] = False
        return keep

    shapes = {n: torch.Size(s) for n, s in shapes.items()}
    if scope == "per_tensor":
        return {n: draw(math.prod(s)).view(s) for n, s in shapes.items()}
    return _split(draw(sum(math.prod(s) for s in shapes.values())), shapes)


def random_scores(
    shapes: Mapping[str, torch.Size],
    seed: int = 0,
    layer_sparsity: Optional[Mapping[str, float]] = None,
) -> MaskDict:
    """Random scores, one per weight, from a private CPU generator.

    Gradual random pruning is :func:`magnitude_prune` of these scores instead of the
    weights: drawn once and kept, every round removes the lowest-scored survivors, so the
    masks are nested and the final one is a random mask at the target sparsity, reached
    while the network trains.

    Without ``layer_sparsity`` the scores are uniform in [0, 1): global pruning then
    removes about the same fraction of every tensor (what :func:`random_masks` draws in one
    go).  With ``layer_sparsity`` (name -> fraction of that tensor pruned in a reference
    mask, e.g. :meth:`PathwayMasks.layer_sparsity` of a language's LSP mask) tensor ``t``
    with ``n_t`` weights of which ``p_t = round(s_t n_t)`` are to go gets the scores
    ``(1, 2, ..., n_t) / p_t`` in random order: global pruning to the reference's overall
    sparsity removes exactly ``p_t`` weights of each tensor, uniformly at random within
    it, and every earlier round the same share of each tensor's ``p_t``.  That is the
    random baseline with the reference's layer-wise sparsity (Frankle et al., "Pruning
    neural networks at initialization: why are we missing the mark?", ICLR 2021): only
    *which* weights a pathway keeps is random, not how many per layer, so a small layer
    that magnitude pruning spares is not cut to the global rate.  A tensor with
    ``p_t = 0`` scores ``inf`` and is never pruned.
    """
    gen = torch.Generator().manual_seed(seed)
    if layer_sparsity is None:
        return {n: torch.rand(torch.Size(s), generator=gen) for n, s in shapes.items()}
    missing = [n for n in shapes if n not in layer_sparsity]
    if missing:
        raise KeyError(f"layer_sparsity has no entry for {missing}")
    out: MaskDict = {}
    for name, shape in shapes.items():
        n = math.prod(shape)
        pruned = round(layer_sparsity[name] * n)
        if not 0 <= pruned <= n:
            raise ValueError(f"layer_sparsity of {name!r} must be in [0, 1], "
                             f"got {layer_sparsity[name]}")
        if pruned == 0:
            out[name] = torch.full(torch.Size(shape), math.inf)
            continue
        rank = torch.randperm(n, generator=gen).to(torch.float32) + 1.0  # exact below 2**24
        out[name] = (rank / pruned).view(torch.Size(shape))
    return out


@dataclass(frozen=True)
class IMPSchedule:
    """When iterative magnitude pruning prunes, and to which sparsity.

    Every ``prune_every`` steps after ``start_step`` a fraction ``prune_fraction`` of the
    *remaining* weights is removed, so round ``k`` reaches ``1 - (1 - p)^k``; the last
    round is capped to hit ``target_sparsity`` exactly.  After that the mask stays fixed.
    Typical use in a trainer::

        if schedule.due(step):
            mask = magnitude_prune(weights, schedule.sparsity_at(step), scope, current=mask)
    """

    target_sparsity: float
    prune_fraction: float
    prune_every: int
    start_step: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_sparsity <= 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1], got {self.target_sparsity}")
        if not 0.0 < self.prune_fraction <= 1.0:
            raise ValueError(f"prune_fraction must be in (0, 1], got {self.prune_fraction}")
        if self.prune_every < 1 or self.start_step < 0:
            raise ValueError("prune_every must be >= 1 and start_step >= 0")
        if self.num_rounds > 100_000:
            raise ValueError("schedule needs more than 100000 rounds; raise prune_fraction")

    def rounds(self) -> list[float]:
        """Sparsity after each round: ``1 - (1-p)^k`` for k = 1, 2, ..., last = target."""
        out: list[float] = []
        k = 0
        while self.target_sparsity > 0.0 and len(out) <= 100_000:
            k += 1
            s = 1.0 - (1.0 - self.prune_fraction) ** k
            if s >= self.target_sparsity - 1e-9:
                out.append(self.target_sparsity)
                break
            out.append(s)
        return out

    @property
    def num_rounds(self) -> int:
        return len(self.rounds())

    @property
    def total_steps_to_target(self) -> int:
        """The step at which the last round prunes (``start_step`` if nothing to prune)."""
        return self.start_step + self.num_rounds * self.prune_every

    def sparsity_after_round(self, k: int) -> float:
        """Sparsity after ``k`` rounds (0 for k <= 0, the target once all rounds are done)."""
        rounds = self.rounds()
        if k <= 0:
            return 0.0
        return rounds[min(k, len(rounds)) - 1]

    def rounds_done(self, step: int) -> int:
        """How many rounds have happened by ``step`` (a round due at ``step`` counts)."""
        if step <= self.start_step:
            return 0
        return min((step - self.start_step) // self.prune_every, self.num_rounds)

    def sparsity_at(self, step: int) -> float:
        """The sparsity the mask should have after any pruning at ``step``."""
        return self.sparsity_after_round(self.rounds_done(step))

    def due(self, step: int) -> bool:
        """True at ``start_step + k * prune_every`` for k = 1 .. num_rounds."""
        offset = step - self.start_step
        return (
            offset > 0
            and offset % self.prune_every == 0
            and offset // self.prune_every <= self.num_rounds
        )


def lth_rewind_(
    model: nn.Module,
    mask: Mapping[str, Tensor],
    rewind_state: Mapping[str, Tensor],
    all_parameters: bool = False,
) -> None:
    """Lottery-ticket rewinding: masked weights := ``rewind_state[name] * mask``.

    Survivors go back to their values at the early checkpoint, pruned weights become
    zero.  With ``all_parameters=True`` the unmasked parameters found in ``rewind_state``
    (biases, norms, ...) are rewound as well.  Optimizer state is not touched; reset it
    if the recipe calls for that.
    """
    params = dict(model.named_parameters())
    missing = [n for n in mask if n not in params or n not in rewind_state]
    if missing:
        raise KeyError(f"cannot rewind {missing}: not in the model or in the rewind state")
    with torch.no_grad():
        for name, p in params.items():
            if name in mask:
                m = mask[name].to(device=p.device, dtype=p.dtype)
                p.copy_(rewind_state[name].to(device=p.device, dtype=p.dtype) * m)
            elif all_parameters and name in rewind_state:
                p.copy_(rewind_state[name])


@dataclass
class _Saved:
    """The frozen elements of one guarded parameter before ``optimizer.step()``."""

    param: Tensor
    index: Tensor  # flat int64 indices of the elements this step must not change
    value: Tensor  # param.view(-1)[index]
    state: dict[str, Tensor]  # the same elements of each elementwise optimizer state tensor
    keys: frozenset  # optimizer state keys that existed before the step


class MaskedUpdate:
    """Undo ``optimizer.step()`` on weights that no language of the step owns.

    Zero gradients are not enough: momentum, Adam moments and weight decay would still
    move weights of languages absent from the step.  So the whole *update* is masked:
    before the step, the *frozen* elements of each guarded parameter and of its
    elementwise optimizer state (tensors shaped like the parameter, e.g. Adam
    ``exp_avg``/``exp_avg_sq``, SGD ``momentum_buffer``) are saved with ``index_select``;
    after it they are written back with ``index_copy_``.  State created by this very step
    is reset to zero there (the optimizers' initial value).  Scalar state such as Adam's
    per-parameter ``step`` counter is shared by the whole tensor and left alone.

    Why indices: pathways overlap (~0.95 in the paper), so the elements a step must freeze
    -- inside the union of all masks but outside the step's owners -- are a few percent of
    the weights.  Weights outside the union need no guard: they are zero, receive exactly
    zero gradient through ``W * m`` and have zero optimizer state (the trainer zeroes both
    when it prunes), so every optimizer here leaves them at zero.  The indices of a set
    of owners are computed once (:func:`frozen_indices`) and reused every step: the step
    itself does no host-device synchronisation.
    """

    def __init__(self, named_params: Mapping[str, nn.Parameter], optimizer: torch.optim.Optimizer):
        self.params = dict(named_params)
        self.optimizer = optimizer

    def snapshot(self, frozen: Mapping[str, Tensor]) -> list[_Saved]:
        """Save the ``frozen`` elements (flat indices per parameter name)."""
        unknown = [n for n in frozen if n not in self.params]
        if unknown:
            raise KeyError(f"frozen indices name unknown parameters: {unknown}")
        saved: list[_Saved] = []
        for name, index in frozen.items():
            if index.numel() == 0:
                continue
            p = self.params[name]
            state = self.optimizer.state.get(p, {})
            saved.append(
                _Saved(
                    param=p,
                    index=index,
                    value=p.detach().view(-1).index_select(0, index),
                    state={k: v.view(-1).index_select(0, index)
                           for k, v in state.items() if _elementwise(v, p)},
                    keys=frozenset(state),
                )
            )
        return saved

    def restore(self, saved: list[_Saved]) -> None:
        with torch.no_grad():
            for s in saved:
                s.param.view(-1).index_copy_(0, s.index, s.value)
                for k, v in self.optimizer.state.get(s.param, {}).items():
                    if not _elementwise(v, s.param):
                        continue
                    if k in s.state:
                        v.view(-1).index_copy_(0, s.index, s.state[k])
                    elif k not in s.keys:
                        v.view(-1).index_fill_(0, s.index, 0)

    @contextmanager
    def guard(
        self, owned: Mapping[str, Tensor], union: Optional[Mapping[str, Tensor]] = None
    ) -> Iterator[None]:
        """``with mu.guard(owned): optimizer.step()`` -- only ``owned`` elements change
        (of those inside ``union``, when given; see :func:`frozen_indices`)."""
        saved = self.snapshot(frozen_indices(owned, union))
        try:
            yield
        finally:
            self.restore(saved)

    def register_hooks(
        self, get_frozen: Callable[[], Optional[Mapping[str, Tensor]]]
    ) -> "_Handles":
        """Guard every ``optimizer.step()`` via optimizer step hooks.

        For trainers whose step call you would rather not edit (ESPnet's
        ``train_one_epoch``, ``GradScaler.step``): ``get_frozen()`` is called right before
        each step and returns the flat indices to freeze per parameter name (``None`` =
        no guard).  A step that is skipped (``GradScaler`` on an overflow) runs neither
        hook.  Returns a handle with ``remove()``.
        """
        pending: list[list[_Saved]] = []

        def pre(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
            pending.clear()
            frozen = get_frozen()
            if frozen is not None:
                pending.append(self.snapshot(frozen))

        def post(optimizer: torch.optim.Optimizer, args: tuple, kwargs: dict) -> None:
            if pending:
                self.restore(pending.pop())

        return _Handles(
            self.optimizer.register_step_pre_hook(pre),
            self.optimizer.register_step_post_hook(post),
        )


def frozen_indices(
    owned: Mapping[str, Tensor], union: Optional[Mapping[str, Tensor]] = None
) -> dict[str, Tensor]:
    """Flat int64 indices of the elements a step must not change, per parameter name.

    ``owned``: the union of the masks of the step's languages.  ``union``: the union of
    all masks (weights outside it are zero and stay zero on their own; see
    :class:`MaskedUpdate`); ``None`` freezes everything not owned.  Computing the indices
    synchronises with the device (``nonzero``): do it once per set of owners, not per step.
    """
    out: dict[str, Tensor] = {}
    for name, m in owned.items():
        frozen = ~m if union is None else union[name].to(m.device) & ~m
        out[name] = frozen.reshape(-1).nonzero().squeeze(1)
    return out


def zero_optimizer_state_(
    optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor], keep: Mapping[str, Tensor]
) -> None:
    """Zero the elementwise optimizer state of ``params`` where ``keep`` is False.

    With the weight already zero there (pruned), zero state keeps it at zero under Adam,
    AdamW and SGD with momentum, so the masked update need not guard it.
    """
    with torch.no_grad():
        for name, m in keep.items():
            p = params[name]
            for v in optimizer.state.get(p, {}).values():
                if _elementwise(v, p):
                    v.masked_fill_(~m.to(v.device), 0)


class _Handles:
    def __init__(self, *handles: object) -> None:
        self._handles = handles

    def remove(self) -> None:
        for h in self._handles:
            h.remove()  # type: ignore[attr-defined]


def _elementwise(v: object, p: Tensor) -> bool:
    return isinstance(v, Tensor) and v.shape == p.shape and v.ndim > 0
