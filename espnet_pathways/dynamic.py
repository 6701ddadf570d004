"""Dynamic ASR Pathways: each language's mask adapts during joint pathway training.

Our reading of Xie et al. (arXiv 2309.13018) is written down in ``docs/dynamic_pathways.md``;
in short:

* **Start** from the dense weights and one mask per language: the masks given with
  ``--pathway_masks`` (e.g. the LAP mask), or -- the default, no pruning run at all -- the
  dense model's magnitude mask at the middle sparsity ``--dynamic_start_sparsity``, one
  copy per language.
* **Pool** P: the union of the start masks and that middle-sparsity magnitude mask, fixed
  until the freeze.  Weights outside P are zero and stay dead; inside P a language may drop
  a weight and take it back later ("revive"): it picks up the weight's current value,
  which other languages may have kept training.
* **Score** of language l (``--dynamic_score``): ``taylor`` = ``|w| * EMA|dL_l/d(w m_l)|``
  (default), ``grad`` = the EMA alone, ``magnitude`` = ``|w|`` (the same for every
  language: the negative control).  The gradient is taken with respect to the *effective*
  weight ``W * m_l``, which is non-zero outside ``m_l`` too, so a language scores weights it
  does not use.  It is read by a tensor hook that the model's forward lets us attach
  (``PathwayTransducerModel.pathway_grad_observer``), once per language pass.
* **Re-derivation**, the one place masks change (:meth:`DynamicPathways.rederive`): every
  ``--pruning_every`` steps, ``m_l`` = the top of ``s_l`` inside P
  (:func:`~espnet_pathways.pruning.magnitude_prune` with the scores as magnitudes and P as
  the current mask), at a sparsity that goes geometrically from the start to
  ``--pruning_target_sparsity`` (:class:`DynamicSchedule`), then stays there (pure swaps).
* **Freeze** at ``--dynamic_freeze_fraction`` of the run: a last re-derivation at the
  target, then the masks are fixed, P shrinks to their union, and weights outside it and
  their optimizer state are zeroed -- from there on it is fixed pathway training, and the
  saved ``masks.pth`` is an ordinary pathway mask file.

What trains a weight is unchanged: the forward is ``W * m_l`` and the trainer's masked
update stands, so language l's steps never move a weight outside ``m_l``; l only scores it.

DDP: each rank accumulates the statistics of its own batches; at a re-derivation they are
averaged over the ranks (one all-reduce) and every rank then derives the same masks from
the same numbers and the same (replicated) weights.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from functools import partial
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence

import torch
from torch import Tensor

from espnet_pathways.fileio import atomic_write_text
from espnet_pathways.masks import DEFAULT_EXCLUDE, PathwayMasks
from espnet_pathways.pruning import magnitude_prune

__all__ = [
    "DRIFT_FILE",
    "SCORES",
    "DynamicPathways",
    "DynamicSchedule",
    "GradientStatistics",
    "add_dynamic_arguments",
    "language_scores",
    "mask_drift",
    "rederive_mask",
]

MaskDict = Dict[str, Tensor]
#: The per-language score that re-derives a mask (module docstring).
SCORES = ("taylor", "grad", "magnitude")
#: Written beside ``masks.pth`` at the end of a dynamic run (read by the reporting code).
DRIFT_FILE = "mask_drift.json"


# --------------------------------------------------------------------------- schedule
@dataclasses.dataclass(frozen=True)
class DynamicSchedule:
    """When masks are re-derived, and to which sparsity.

    Re-derivation ``k`` (at ``start_step + k * every``) sets the sparsity to
    ``1 - (1 - start) * (1 - fraction)^k``, capped at ``target`` -- IMP's geometric
    schedule, starting from the start masks' sparsity instead of 0.  Once at the target it
    keeps re-deriving at the target (weights swap in and out) until ``freeze_step``, where
    one last re-derivation is at the target whatever the round, and nothing after.
    """

    start_sparsity: float
    target_sparsity: float
    fraction: float
    every: int
    freeze_step: int
    start_step: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.start_sparsity <= self.target_sparsity <= 1.0:
            raise ValueError(
                f"dynamic pathways need 0 <= start sparsity ({self.start_sparsity:.4f}) <= "
                f"target sparsity ({self.target_sparsity:.4f}) <= 1"
            )
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"--pruning_fraction must be in (0, 1], got {self.fraction}")
        if self.every < 1 or self.start_step < 0:
            raise ValueError("--pruning_every must be >= 1 and --pruning_start >= 0")
        if self.freeze_step <= self.start_step:
            raise ValueError(
                f"the freeze step ({self.freeze_step}) must come after --pruning_start "
                f"({self.start_step}): raise --dynamic_freeze_fraction or the run's steps"
            )

    def due(self, step: int) -> bool:
        """A re-derivation happens after optimizer step ``step``."""
        offset = step - self.start_step
        regular = offset > 0 and offset % self.every == 0 and step < self.freeze_step
        return regular or step == self.freeze_step

    def sparsity_at(self, step: int) -> float:
        """The sparsity of the masks derived at ``step`` (the target from the freeze on)."""
        if step >= self.freeze_step:
            return self.target_sparsity
        k = max(0, (step - self.start_step) // self.every)
        s = 1.0 - (1.0 - self.start_sparsity) * (1.0 - self.fraction) ** k
        return min(s, self.target_sparsity)


# --------------------------------------------------------------------------- statistics
class GradientStatistics:
    """Per language, an EMA of ``|dL_l / d(W * m_l)|`` for every masked weight.

    One float32 tensor per language per prunable parameter, on the weights' device.
    :meth:`observe` is the model's ``pathway_grad_observer``: it attaches a tensor hook to
    each effective weight of a language pass; the hook folds the gradient into that
    language's EMA when backward reaches it.  Non-finite gradients (a step ESPnet will
    skip) count as zero so that one bad batch cannot poison the statistics for good.
    """

    def __init__(self, shapes: Mapping[str, torch.Size], languages: Sequence[str],
                 decay: float, device: torch.device) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"--dynamic_ema_decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.names = list(shapes)
        self.ema: Dict[str, MaskDict] = {
            lang: {n: torch.zeros(s, dtype=torch.float32, device=device) for n, s in shapes.items()}
            for lang in languages
        }
        #: language passes observed since the start (a language never seen has no score)
        self.seen: Dict[str, int] = {lang: 0 for lang in languages}

    def observe(self, languages: Sequence[str], effective: Mapping[str, Tensor]) -> None:
        """Attach the gradient hooks to one language pass's effective weights."""
        langs = tuple(lang for lang in languages if lang in self.ema)
        if not langs:
            return
        for lang in langs:
            self.seen[lang] += 1
        for name in self.names:
            t = effective[name]
            if t.requires_grad:
                t.register_hook(partial(self._accumulate, langs, name))

    @torch.no_grad()
    def _accumulate(self, langs: Sequence[str], name: str, grad: Tensor) -> None:
        g = torch.nan_to_num(grad.detach().float().abs(), nan=0.0, posinf=0.0, neginf=0.0)
        for lang in langs:
            self.ema[lang][name].mul_(self.decay).add_(g, alpha=1.0 - self.decay)

    @torch.no_grad()
    def average_over_ranks_(self) -> None:
        """Under DDP, replace every rank's statistics by their mean over the ranks."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return
        world = torch.distributed.get_world_size()
        for lang in self.ema:
            flat = torch.cat([t.reshape(-1) for t in self.ema[lang].values()])
            torch.distributed.all_reduce(flat)
            flat /= world
            tensors = list(self.ema[lang].values())
            for t, part in zip(tensors, torch.split(flat, [t.numel() for t in tensors])):
                t.copy_(part.view_as(t))
        seen = torch.tensor([self.seen[lang] for lang in self.ema], dtype=torch.float64,
                            device=next(iter(next(iter(self.ema.values())).values())).device)
        torch.distributed.all_reduce(seen)
        self.seen = {lang: int(v) for lang, v in zip(self.ema, seen.tolist())}

    def state(self) -> dict:
        return {"ema": {lang: {n: t.cpu() for n, t in d.items()} for lang, d in self.ema.items()},
                "seen": dict(self.seen), "decay": self.decay}

    def load_state(self, state: Mapping[str, Any], device: torch.device) -> None:
        self.ema = {lang: {n: t.to(device) for n, t in d.items()}
                    for lang, d in state["ema"].items()}
        self.seen = {lang: int(v) for lang, v in state["seen"].items()}


def language_scores(kind: str, weights: Mapping[str, Tensor],
                    ema: Optional[Mapping[str, Tensor]]) -> MaskDict:
    """The score each weight has for one language (higher = keep); non-negative.

    ``ema`` is the language's gradient statistics, or ``None`` when it has none yet (no
    batch of that language since the start): then every kind falls back to ``|w|``.
    """
    if kind not in SCORES:
        raise ValueError(f"--dynamic_score must be one of {SCORES}, got {kind!r}")
    out: MaskDict = {}
    for n, w in weights.items():
        mag = w.detach().float().abs()
        if kind == "magnitude" or ema is None:
            out[n] = mag
        elif kind == "grad":
            out[n] = ema[n].clone()
        else:
            out[n] = mag * ema[n]
    return out


def rederive_mask(scores: Mapping[str, Tensor], pool: Mapping[str, Tensor], sparsity: float,
                  scope: str = "global") -> MaskDict:
    """Keep the highest scores inside ``pool`` so that ``round(sparsity * n)`` weights are
    removed (``n`` counts every weight, the pool's outside included).

    This is :func:`~espnet_pathways.pruning.magnitude_prune` with the (non-negative)
    scores as magnitudes and the pool as the current mask: the same ranking, ties and
    scopes as IMP; only what is ranked differs, and anything inside the pool may return.
    """
    return magnitude_prune(scores, sparsity, scope, current=pool)


def _pair_iou(ma: Mapping[str, Tensor], mb: Mapping[str, Tensor], names: Sequence[str]) -> float:
    inter = sum(int((ma[n] & mb[n]).count_nonzero()) for n in names)
    union = sum(int((ma[n] | mb[n]).count_nonzero()) for n in names)
    return inter / union if union else 0.0


def _pairs(masks: Mapping[str, Mapping[str, Tensor]], names: Sequence[str]) -> Dict[str, float]:
    langs = list(masks)
    return {f"{a}-{b}": _pair_iou(masks[a], masks[b], names)
            for i, a in enumerate(langs) for b in langs[i + 1:]}


def mask_drift(start: Mapping[str, Mapping[str, Tensor]], end: Mapping[str, Mapping[str, Tensor]],
               revived: Optional[Mapping[str, int]] = None) -> Dict[str, Any]:
    """The content of ``mask_drift.json``: how far the masks moved, and apart.

    * ``start`` / ``end``: IoU ``|m_a & m_b| / |m_a | m_b|`` of every language pair
      (``"en-fr"``, in language order) for the start and the final masks;
    * ``groups``: the same per layer group (the groups of the overlap plots,
      :func:`espnet_pathways.reporting.mask_overlap.group_params`);
    * ``changed_fraction``: per language, ``1 - IoU(start mask, final mask)``;
    * ``revived``: per language, how many times a weight re-entered its mask (cumulative).
    """
    from espnet_pathways.reporting.mask_overlap import group_params

    names = list(next(iter(end.values())))
    groups = group_params(names)
    return {
        "start": _pairs(start, names),
        "end": _pairs(end, names),
        "groups": {g: {"start": _pairs(start, ns), "end": _pairs(end, ns)}
                   for g, ns in groups.items()},
        "changed_fraction": {lang: 1.0 - _pair_iou(start[lang], end[lang], names) for lang in end},
        "revived": dict(revived or {}),
    }


# --------------------------------------------------------------------------- the method
def _cpu(masks: Mapping[str, Mapping[str, Tensor]]) -> Dict[str, MaskDict]:
    return {k: {n: m.cpu() for n, m in v.items()} for k, v in masks.items()}


class DynamicPathways:
    """The dynamic-mask state of one training run; the trainer calls :meth:`after_step`.

    Holds the pool, the start masks (for the drift report), the gradient statistics and
    the schedule; the current masks are the model's ``pathway_masks`` (one mask dict per
    language, never shared, on the weights' device).
    """

    def __init__(self, model, names: Sequence[str], options) -> None:
        o = options
        if o.pruning_shared:
            raise ValueError("--pruning dynamic gives each language its own mask: "
                             "--pruning_shared must be false")
        self.model = model
        self.names = list(names)
        self.score = o.dynamic_score
        if self.score not in SCORES:
            raise ValueError(f"--dynamic_score must be one of {SCORES}, got {self.score!r}")
        self.scope = o.pruning_scope
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in self.names}
        device = next(iter(self.params.values())).device
        weights = {n: p.detach() for n, p in self.params.items()}
        given = model.pathway_masks
        languages = list(model.languages or (given.languages if given is not None else []))
        if not languages:
            raise ValueError("--pruning dynamic needs --languages")
        if o.pruning_languages and sorted(o.pruning_languages) != sorted(languages):
            raise ValueError(f"--pruning dynamic adapts every language's mask ({languages}); "
                             f"--pruning_languages {o.pruning_languages} would leave some fixed")
        middle = magnitude_prune(weights, o.dynamic_start_sparsity, self.scope)
        if given is not None:
            missing = [lang for lang in languages if lang not in given]
            if missing:
                raise ValueError(f"--pathway_masks ({given.source}) has no mask for {missing}")
            start = {lang: {n: given.for_language(lang)[n].to(device).clone() for n in self.names}
                     for lang in languages}
            init = given.source or "pathway_masks"
        else:
            start = {lang: {n: m.clone() for n, m in middle.items()} for lang in languages}
            init = f"magnitude of the start weights at sparsity {o.dynamic_start_sparsity}"
        self.pool: MaskDict = {n: middle[n].clone() for n in self.names}
        for mask in start.values():
            for n in self.names:
                self.pool[n] |= mask[n]
        self.start = _cpu(start)
        start_sparsity = max(PathwayMasks(start).sparsity(lang) for lang in languages)
        if o.pruning_target_sparsity < start_sparsity < o.pruning_target_sparsity + 1e-3:
            start_sparsity = o.pruning_target_sparsity  # rounding (e.g. per-tensor scope)
        if not 0.0 < o.dynamic_freeze_fraction <= 1.0:
            raise ValueError("--dynamic_freeze_fraction must be in (0, 1], got "
                             f"{o.dynamic_freeze_fraction}")
        total = (o.max_epoch * o.num_iters_per_epoch) if o.num_iters_per_epoch else None
        if total is None:
            raise ValueError("--pruning dynamic needs --num_iters_per_epoch: the masks freeze "
                             "at --dynamic_freeze_fraction of max_epoch x num_iters_per_epoch")
        self.schedule = DynamicSchedule(
            start_sparsity=start_sparsity, target_sparsity=o.pruning_target_sparsity,
            fraction=o.pruning_fraction, every=o.pruning_every,
            freeze_step=max(1, round(o.dynamic_freeze_fraction * total)),
            start_step=o.pruning_start,
        )
        self.frozen = False
        self.revived = {lang: 0 for lang in languages}
        self.stats: Optional[GradientStatistics] = None
        if self.score != "magnitude":
            self.stats = GradientStatistics({n: p.shape for n, p in self.params.items()},
                                            languages, o.dynamic_ema_decay, device)
        meta = {
            "method": "dynamic",
            "init": init,
            "languages": languages,
            "start_sparsity": start_sparsity,
            "pool_sparsity": 1.0 - sum(int(m.count_nonzero()) for m in self.pool.values())
            / sum(m.numel() for m in self.pool.values()),
            "target_sparsity": o.pruning_target_sparsity,
            "prune_fraction": o.pruning_fraction,
            "every": o.pruning_every,
            "freeze_step": self.schedule.freeze_step,
            "score": self.score,
            "ema_decay": o.dynamic_ema_decay,
            "scope": self.scope,
            "exclude": list(o.pruning_exclude or DEFAULT_EXCLUDE),
            "output_dir": str(o.output_dir),
        }
        model.set_pathway_masks(PathwayMasks(start, meta))
        self._attach()
        logging.info(
            "Dynamic pathways for %s: start sparsity %.4f (%s), pool sparsity %.4f, score %s; "
            "re-derived every %d steps towards %.4f, frozen at step %d",
            languages, start_sparsity, init, meta["pool_sparsity"], self.score,
            self.schedule.every, self.schedule.target_sparsity, self.schedule.freeze_step,
        )

    # ------------------------------------------------------------------ hooks
    def _attach(self) -> None:
        observe = None if (self.frozen or self.stats is None) else self.stats.observe
        self.model.pathway_grad_observer = observe

    def close(self) -> None:
        """Stop observing; a run that ends before the freeze (early stopping, a crash)
        keeps masks that may not be at the target, which the log says."""
        self.model.pathway_grad_observer = None
        if not self.frozen:
            masks = self.model.pathway_masks
            logging.warning(
                "Dynamic pathways: the run ended before the freeze step %d; the masks are "
                "as last re-derived (sparsity %s)", self.schedule.freeze_step,
                ", ".join(f"{lang}={masks.sparsity(lang):.4f}" for lang in masks.languages))

    def end_of_epoch(self) -> None:
        """Average the statistics over the ranks (DDP) before ESPnet writes its checkpoint
        (rank 0's): a resumed run then starts from what every rank held, not rank 0's
        share alone.  A no-op in a single process or once the masks are frozen."""
        if self.stats is not None:
            self.stats.average_over_ranks_()

    def after_step(self, step: int) -> bool:
        """Re-derive and/or freeze after optimizer step ``step``; True if masks changed."""
        if self.frozen or not self.schedule.due(step):
            return False
        self.rederive(step)
        if step >= self.schedule.freeze_step:
            self.freeze(step)
        return True

    # ------------------------------------------------------------------ the one place
    @torch.no_grad()
    def rederive(self, step: int) -> None:
        """Every language's mask := the top of its scores inside the pool (module doc)."""
        sparsity = self.schedule.sparsity_at(step)
        if self.stats is not None:
            self.stats.average_over_ranks_()
        masks = self.model.pathway_masks
        weights = {n: p.detach() for n, p in self.params.items()}
        changes = {}
        for lang in masks.languages:
            ema = None
            if self.stats is not None and self.stats.seen.get(lang, 0) > 0:
                ema = self.stats.ema[lang]
            if ema is None and self.score != "magnitude":
                logging.warning("Dynamic pathways, step %d: no batch of %s yet; its mask is "
                                "re-derived by magnitude", step, lang)
            new = rederive_mask(language_scores(self.score, weights, ema), self.pool,
                                sparsity, self.scope)
            old = masks.masks[lang]
            added = sum(int((new[n] & ~old[n]).count_nonzero()) for n in new)
            dropped = sum(int((old[n] & ~new[n]).count_nonzero()) for n in new)
            self.revived[lang] += added
            masks.masks[lang] = new
            changes[lang] = (masks.sparsity(lang), added, dropped)
        masks.meta["step"] = step
        masks.meta["sparsity"] = {lang: c[0] for lang, c in changes.items()}
        masks.meta["revived"] = dict(self.revived)
        logging.info(
            "Dynamic pathways, step %d: masks re-derived at sparsity %.4f (%s)", step, sparsity,
            ", ".join(f"{lang}={s:.4f} +{a}/-{d}" for lang, (s, a, d) in changes.items()),
        )

    def freeze(self, step: int) -> None:
        """Masks fixed from now on; the pool shrinks to their union (the trainer then
        zeroes the weights outside it and their optimizer state)."""
        self.frozen = True
        self.pool = self.model.pathway_masks.union()
        self.stats = None  # no more re-derivations: free the statistics
        self._attach()
        self.model.pathway_masks.meta["frozen_at"] = step
        logging.info("Dynamic pathways: masks frozen at step %d\n%s", step,
                     self.model.pathway_masks.summary_table())

    # ------------------------------------------------------------------ reporting
    def drift(self) -> Dict[str, Any]:
        end = _cpu(self.model.pathway_masks.masks)
        return mask_drift(self.start, end, self.revived)

    def write_drift(self, out_dir: Path) -> Path:
        out = Path(out_dir) / DRIFT_FILE
        atomic_write_text(out, json.dumps(self.drift(), indent=1, sort_keys=False) + "\n")
        return out

    # ------------------------------------------------------------------ state
    def state(self) -> dict:
        """Everything beyond the current masks that a resumed run needs."""
        return {
            "pool": {n: m.cpu() for n, m in self.pool.items()},
            "start": self.start,
            "frozen": self.frozen,
            "revived": dict(self.revived),
            "stats": None if self.stats is None else self.stats.state(),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        device = next(iter(self.params.values())).device
        self.pool = {n: m.to(device) for n, m in state["pool"].items()}
        self.start = {k: dict(v) for k, v in state["start"].items()}
        self.frozen = bool(state["frozen"])
        self.revived = dict(state["revived"])
        if state["stats"] is None:
            self.stats = None
        elif self.stats is not None:
            self.stats.load_state(state["stats"], device)
        self._attach()


def add_dynamic_arguments(group) -> None:
    """The ``--dynamic_*`` options (the schedule reuses ``--pruning_*``)."""
    group.add_argument("--dynamic_score", type=str, default="taylor", choices=list(SCORES),
                       help="--pruning dynamic: per-language score that re-derives the masks: "
                       "taylor |w|*EMA|dL_l/d(w m_l)|, grad (the EMA alone), magnitude |w| "
                       "(the same for every language)")
    group.add_argument("--dynamic_ema_decay", type=float, default=0.9,
                       help="--pruning dynamic: EMA decay of the gradient statistics, per "
                       "language pass")
    group.add_argument("--dynamic_start_sparsity", type=float, default=0.5,
                       help="--pruning dynamic: sparsity of the middle-sparsity magnitude "
                       "mask of the start weights: the start masks when no --pathway_masks "
                       "is given, and the pool a language may revive weights from")
    group.add_argument("--dynamic_freeze_fraction", type=float, default=0.75,
                       help="--pruning dynamic: masks fixed after this fraction of "
                       "max_epoch x num_iters_per_epoch steps")
