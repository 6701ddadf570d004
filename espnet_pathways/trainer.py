"""PathwayTrainer: ESPnet's Trainer plus language-conditioned pruning and masked updates.

ESPnet's training loop (``Trainer.train_one_epoch``) is used unchanged, single process or
torch DDP.  What pathways need is attached around it through the optimizers' hooks:

* **Masked update** (pre/post ``optimizer.step()``, :class:`~espnet_pathways.pruning.
  MaskedUpdate`): a weight that no language of the current step owns does not move, not
  through momentum, Adam moments or weight decay either.  The step's owners are the
  languages the model saw since the last step; under DDP, the union over the ranks (a
  vector of one flag per language, all-reduced with MAX: the gradient is the sum over the
  ranks, so its owners are the union).  The elements to freeze for a set of owners are
  computed once and cached (they change only when the masks do).
* **Skipped steps**: when ESPnet skips ``optimizer.step()`` (non-finite gradient, AMP
  overflow) the model notices at the next forward and forgets that step's languages
  (:meth:`PathwayTransducerModel.forget_languages_of_skipped_step`).
* **Iterative magnitude pruning** (post step): every ``--pruning_every`` steps a fraction
  ``--pruning_fraction`` of the remaining weights of each pruned pathway is removed, until
  ``--pruning_target_sparsity``; then the masks stay fixed.  Pruned weights and their
  optimizer state are zeroed.  ``--pruning lth`` also rewinds every parameter to its value
  at step ``--lth_rewind_step`` (survivors of the masks, biases, norms, embeddings and the
  output layer alike), clears the optimizer state and restarts the LR schedule.
  ``--pruning_languages`` says which pathways are pruned (one for language-specific
  pruning, all of them with ``--pruning_shared true`` for language-agnostic pruning).
  ``--pruning random`` prunes by random scores (drawn once per language from
  ``--seed``) on the same schedule: gradual random pruning, the trained random-mask
  pathways baseline.
* **Dynamic pathways** (``--pruning dynamic``, :mod:`espnet_pathways.dynamic`): every
  language's mask is re-derived every ``--pruning_every`` steps from that language's
  statistics, inside a fixed pool, until the freeze; the hooks here only call into
  :class:`~espnet_pathways.dynamic.DynamicPathways` (marked "dynamic pathways").
* **Compute** (:mod:`espnet_pathways.compute`): every optimizer step taken is counted,
  with the utterances of each language that reached it (a forward pre-hook counts the
  ``lang`` ids of training batches; under DDP the per-language counts of a step are
  all-reduced with SUM, so every rank holds the global counts); rank 0 writes
  ``compute.json`` when training ends.
* **State**: the masks, the step count, the compute counts and the LTH rewind point
  travel inside ESPnet's
  ``checkpoint.pth`` (an entry of the first optimizer's ``state_dict``, added by a
  ``state_dict`` hook and read back by a ``load_state_dict`` hook), so ``--resume`` after
  a kill at any moment restores masks that match the weights.  ESPnet writes the
  checkpoint on rank 0 only; ``masks.pth`` is written by rank 0 at the end.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Sequence

import torch
from typeguard import typechecked

from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.types import str2bool

from espnet_pathways.compute import ComputeCounter
from espnet_pathways.dynamic import DynamicPathways, add_dynamic_arguments
from espnet_pathways.fileio import atomic_output
from espnet_pathways.lr_schedule import cycle_mismatches
from espnet_pathways.masks import (
    DEFAULT_EXCLUDE,
    PathwayMasks,
    apply_masks_,
    prunable_parameter_names,
)
from espnet_pathways.pruning import (
    IMPSchedule,
    MaskedUpdate,
    frozen_indices,
    lth_rewind_,
    magnitude_prune,
    random_scores,
    zero_optimizer_state_,
)

PRUNING_METHODS = ("none", "imp", "lth", "random", "dynamic")
#: Key of the pathway state inside the first optimizer's state_dict (checkpoint.pth).
CHECKPOINT_KEY = "espnet_pathways"


@dataclasses.dataclass
class PathwayTrainerOptions(TrainerOptions):
    pruning: str
    pruning_languages: List[str]
    pruning_shared: bool
    pruning_target_sparsity: float
    pruning_fraction: float
    pruning_every: int
    pruning_start: int
    pruning_scope: str
    pruning_exclude: List[str]
    lth_rewind_step: int
    random_layer_sparsity_from: Optional[str]
    mask_updates: bool
    # dynamic pathways (espnet_pathways.dynamic); num_iters_per_epoch is AbsTask's option
    dynamic_score: str
    dynamic_ema_decay: float
    dynamic_start_sparsity: float
    dynamic_freeze_fraction: float
    num_iters_per_epoch: Optional[int]
    freeze_pathways: List[str]  # add_language


def distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def is_writer() -> bool:
    """Rank 0 (or the only process) writes files; the other ranks hold the same state."""
    return not distributed() or torch.distributed.get_rank() == 0


class PathwayController:
    """Holds the pruning state of one training run and acts at every optimizer step."""

    def __init__(self, model, optimizers, options: PathwayTrainerOptions,
                 schedulers: Sequence = ()) -> None:
        self.model = model
        self.options = options
        self.optimizers = list(optimizers)
        self.schedulers = [s for s in schedulers if s is not None]
        self.step = 0
        self.output_dir = Path(options.output_dir)
        self.rewind_state: Optional[Dict[str, torch.Tensor]] = None
        self.params = dict(model.named_parameters())
        exclude = options.pruning_exclude or list(DEFAULT_EXCLUDE)
        self.names = prunable_parameter_names(model, exclude=exclude)
        self.schedule: Optional[IMPSchedule] = None
        self._frozen_cache: Dict[FrozenSet[str], Dict[str, torch.Tensor]] = {}
        self._cache_masks = None
        self._union: Optional[Dict[str, torch.Tensor]] = None
        self.dynamic: Optional[DynamicPathways] = None
        # Where an LTH rewind restarts the LR schedule.
        self._initial_lrs = [[g["lr"] for g in o.param_groups] for o in self.optimizers]
        self._initial_schedulers = [copy.deepcopy(s.state_dict()) for s in self.schedulers]
        self.compute = ComputeCounter(list(model.languages))
        self.random_scores: Dict[str, Dict[str, torch.Tensor]] = {}

        if options.pruning not in PRUNING_METHODS:
            raise ValueError(f"--pruning must be one of {PRUNING_METHODS}, got {options.pruning!r}")
        if getattr(options, "random_layer_sparsity_from", None) and options.pruning != "random":
            # Before any branch: with --pruning none or dynamic it would be silently ignored.
            raise ValueError("--random_layer_sparsity_from is for --pruning random, "
                             f"not --pruning {options.pruning}")
        if options.pruning == "dynamic":  # dynamic pathways: start masks, pool, statistics
            self.dynamic = DynamicPathways(model, self.names, options)
        elif options.pruning != "none":
            self._start_pruning()
        if model.pathway_masks is not None:
            # Weights outside every pathway are never used: make them exactly zero.
            self._zero_outside_union()
        self.handles = []
        # add_language: nothing an old pathway reads changes (espnet_pathways.add_language).
        freeze = None
        if getattr(options, "freeze_pathways", None):
            from espnet_pathways.add_language import FrozenPathways

            if options.pruning == "lth":
                raise ValueError("--freeze_pathways with --pruning lth: the LTH rewind "
                                 "would move frozen weights")
            freeze = FrozenPathways(model, options.freeze_pathways)
        self.freeze = freeze
        for opt in self.optimizers:
            if model.pathway_masks is not None and options.mask_updates:
                masked = MaskedUpdate({n: self.params[n] for n in self._masked_names()}, opt)
                self.handles.append(masked.register_hooks(self.frozen))
            if freeze is not None:  # add_language; before _after_step (pruning) runs
                self.handles.extend(freeze.register_hooks(opt))
            self.handles.append(opt.register_step_post_hook(self._after_step))
        self.handles.append(model.register_forward_pre_hook(self._see_batch, with_kwargs=True))
        if self.optimizers:
            # The pruning state and compute counts are written and read with ESPnet's
            # checkpoint.
            first = self.optimizers[0]
            self.handles.append(first.register_state_dict_post_hook(self._add_state))
            self.handles.append(first.register_load_state_dict_pre_hook(self._pop_state))

    # ------------------------------------------------------------------ set-up
    def _masked_names(self) -> List[str]:
        return list(self.model.pathway_masks.param_names)

    def _start_pruning(self) -> None:
        o = self.options
        langs = list(o.pruning_languages or self.model.languages)
        unknown = [x for x in langs if x not in self.model.languages]
        if unknown:
            raise ValueError(
                f"--pruning_languages {unknown} not in --languages {self.model.languages}"
            )
        self.prune_langs = langs
        self.schedule = IMPSchedule(
            target_sparsity=o.pruning_target_sparsity,
            prune_fraction=o.pruning_fraction,
            prune_every=o.pruning_every,
            start_step=o.pruning_start,
        )
        if self.model.pathway_masks is None:
            meta = {
                "method": "lap" if o.pruning_shared else o.pruning,
                "pruning": o.pruning,
                "languages": langs,
                "shared": o.pruning_shared,
                "target_sparsity": o.pruning_target_sparsity,
                "prune_fraction": o.pruning_fraction,
                "prune_every": o.pruning_every,
                "scope": o.pruning_scope,
                "exclude": list(o.pruning_exclude or DEFAULT_EXCLUDE),
                "lth_rewind_step": o.lth_rewind_step if o.pruning == "lth" else None,
                "random_layer_sparsity_from": (o.random_layer_sparsity_from
                                               if o.pruning == "random" else None),
                "output_dir": str(o.output_dir),
            }
            masks = PathwayMasks.from_model_dense(self.model, langs, self.names, meta=meta)
            self._share_if_lap(masks)
            self.model.set_pathway_masks(masks)
        logging.info(
            "Pruning %s of pathway(s) %s to sparsity %.3f: %d rounds of %.3f every %d steps "
            "(last round at step %d)",
            self.options.pruning, langs, self.schedule.target_sparsity,
            self.schedule.num_rounds, self.schedule.prune_fraction,
            self.schedule.prune_every, self.schedule.total_steps_to_target,
        )
        if o.pruning == "lth" and o.lth_rewind_step == 0:
            self.rewind_state = self._weights()
        if o.pruning == "random":
            # One fixed score per weight and language: nested masks, deterministic from
            # --seed (a resumed run draws the same scores).
            shapes = {n: self.params[n].shape for n in self.names}
            order = list(self.model.languages or langs)
            layers = self._reference_layer_sparsity(langs)
            for lang in langs:
                self.random_scores[lang] = random_scores(
                    shapes, seed=1000 * int(getattr(o, "seed", 0)) + order.index(lang),
                    layer_sparsity=layers.get(lang))

    def _reference_layer_sparsity(self, langs: Sequence[str]) -> Dict[str, Dict[str, float]]:
        """``--random_layer_sparsity_from``: each language's per-tensor sparsity in the
        reference mask file (random pathways with the LSP masks' layer-wise sparsity);
        ``{}`` without one (every tensor pruned at about the global rate)."""
        path = getattr(self.options, "random_layer_sparsity_from", None)
        if not path:
            return {}
        ref = PathwayMasks.load(path)
        missing = [lang for lang in langs if lang not in ref]
        if missing:
            raise ValueError(f"--random_layer_sparsity_from {path}: no mask for "
                             f"language(s) {missing} (it has {ref.languages})")
        if sorted(ref.param_names) != sorted(self.names):
            raise ValueError(f"--random_layer_sparsity_from {path}: its masks cover other "
                             "weights than this model's prunable ones (another model or "
                             "--pruning_exclude)")
        out = {lang: ref.layer_sparsity(lang) for lang in langs}
        for lang in langs:
            if abs(ref.sparsity(lang) - self.options.pruning_target_sparsity) > 1e-3:
                logging.warning(
                    "--random_layer_sparsity_from %s: %s's mask has sparsity %.4f, the "
                    "target is %.4f: the layers keep the reference's proportions only",
                    path, lang, ref.sparsity(lang), self.options.pruning_target_sparsity)
        logging.info("Random pruning with the layer-wise sparsity of %s", path)
        return out

    def _share_if_lap(self, masks: PathwayMasks) -> None:
        """LAP: one mask object for all languages (one masked forward per batch)."""
        if self.options.pruning_shared:
            shared = masks.masks[self.prune_langs[0]]
            masks.masks = {lang: shared for lang in masks.masks}

    def _weights(self) -> Dict[str, torch.Tensor]:
        """Every parameter (the LTH rewind point: not only the prunable ones)."""
        return {n: p.detach().clone() for n, p in self.params.items()}

    # ------------------------------------------------------------- ownership
    def step_owners(self) -> FrozenSet[str]:
        """Languages owning this step: seen since the last step, on any rank.

        Under DDP the gradient is the sum over the ranks, so the owners are the union of
        the ranks' languages: one flag per language, all-reduced with MAX (a few bytes,
        on the weights' device as NCCL needs).
        """
        langs = self.model.step_languages
        if not distributed():
            return frozenset(langs)
        order = list(self.model.languages or self.model.pathway_masks.languages)
        device = next(iter(self.params.values())).device
        flags = torch.tensor([lang in langs for lang in order], dtype=torch.uint8, device=device)
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MAX)
        return frozenset(lang for lang, f in zip(order, flags.tolist()) if f)

    def _check_cache(self) -> None:
        masks = self.model.pathway_masks
        if masks is not self._cache_masks:  # new masks (resume, device move): recompute
            self._frozen_cache.clear()
            self._union = None
            self._cache_masks = masks

    def union(self) -> Dict[str, torch.Tensor]:
        self._check_cache()
        if self._union is None:
            # dynamic pathways: weights of the pool outside every mask may come back; they
            # are kept (frozen) like the union's, not zeroed
            self._union = (self.model.pathway_masks.union() if self.dynamic is None
                           else self.dynamic.pool)
        return self._union

    def frozen(self) -> Optional[Dict[str, torch.Tensor]]:
        """Flat indices, per masked parameter, that this step must not change (pre-step).

        Inside the union of all masks but outside the owners' masks; cached per set of
        owners until the masks change.  ``None`` (no guard) for a step without languages.
        """
        owners = self.step_owners()
        if not owners:
            return None
        self._check_cache()
        if owners not in self._frozen_cache:
            masks = self.model.pathway_masks
            langs = sorted(owners)
            owned = {n: m.clone() for n, m in masks.for_language(langs[0]).items()}
            for lang in langs[1:]:
                for n, m in masks.for_language(lang).items():
                    owned[n] |= m
            self._frozen_cache[owners] = frozen_indices(owned, self.union())
        return self._frozen_cache[owners]

    def _zero_outside_union(self) -> None:
        """Weights outside every pathway and their optimizer state become exactly zero."""
        union = self.union()
        apply_masks_(self.model, union)
        for opt in self.optimizers:
            zero_optimizer_state_(opt, self.params, union)

    def _see_batch(self, module, args, kwargs) -> None:
        """Forward pre-hook: count the training batch's utterances per language."""
        lang = kwargs.get("lang")
        # Only ESPnet's call holds ``lang`` (the model's inner per-pathway calls do not).
        if not module.training or lang is None or not self.compute.languages:
            return
        if self.compute.pending and all(p.grad is None for p in self.params.values()):
            # The previous step was skipped (ESPnet zeroes the gradients without a step).
            self.compute.forget_pending()
        ids = lang.view(lang.size(0), -1)[:, 0].long().cpu()
        self.compute.see(ids.tolist())

    def _count_step(self) -> None:
        """This step's utterances per language, summed over the ranks under DDP."""
        utts = self.compute.pending_vector()
        if distributed() and utts:
            device = next(iter(self.params.values())).device
            t = torch.tensor(utts, dtype=torch.long, device=device)
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.SUM)
            utts = t.tolist()
        self.compute.step_taken(utts)

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.model.step_languages.clear()
        self.step += 1
        self._count_step()
        o = self.options
        if o.pruning == "lth" and self.step == o.lth_rewind_step and self.rewind_state is None:
            self.rewind_state = self._weights()
            logging.info("LTH: saved the rewind point at step %d", self.step)
        if self.schedule is not None and self.schedule.due(self.step):
            self.prune()
        if self.dynamic is not None and self.dynamic.after_step(self.step):  # dynamic pathways
            self._cache_masks = None  # the masks (and at the freeze, the pool) changed
            self._zero_outside_union()

    # ----------------------------------------------------------------- pruning
    @torch.no_grad()
    def prune(self) -> None:
        """One IMP round at the current step (magnitudes of the current weights)."""
        target = self.schedule.sparsity_at(self.step)
        masks = self.model.pathway_masks
        weights = {n: self.params[n].detach() for n in self.names}
        o = self.options

        def scores(lang: str) -> Dict[str, torch.Tensor]:
            return self.random_scores[lang] if o.pruning == "random" else weights

        if o.pruning_shared:
            first = self.prune_langs[0]
            new = magnitude_prune(scores(first), target, o.pruning_scope, current=masks.masks[first])
            for lang in self.prune_langs:
                masks.masks[lang] = new
        elif self.freeze is not None:  # add_language: free and shared weights apart
            for lang in self.prune_langs:
                masks.masks[lang] = self.freeze.prune(weights, target, o.pruning_scope,
                                                      masks.masks[lang])
        else:
            for lang in self.prune_langs:
                masks.masks[lang] = magnitude_prune(
                    scores(lang), target, o.pruning_scope, current=masks.masks[lang]
                )
        masks.meta["step"] = self.step
        masks.meta["sparsity"] = {lang: masks.sparsity(lang) for lang in self.prune_langs}
        self._cache_masks = None  # the masks changed in place
        self._check_cache()
        rewound = o.pruning == "lth" and self.rewind_state is not None
        if rewound:
            self.rewind()
        else:
            self._zero_outside_union()
        logging.info(
            "Pruned at step %d to sparsity %.4f (%s)%s", self.step, target,
            ", ".join(f"{lang}={masks.sparsity(lang):.4f}" for lang in self.prune_langs),
            "; rewound every parameter, reset the optimizer and LR schedule (LTH)"
            if rewound else "",
        )

    def rewind(self) -> None:
        """LTH: every parameter back to the rewind point (pruned weights zero), fresh
        optimizer state, and the LR schedule from its start."""
        lth_rewind_(self.model, self.union(), self.rewind_state, all_parameters=True)
        for opt, lrs in zip(self.optimizers, self._initial_lrs):
            opt.state.clear()
            for group, lr in zip(opt.param_groups, lrs):
                group["lr"] = lr
        for sched, state in zip(self.schedulers, self._initial_schedulers):
            state = copy.deepcopy(state)
            if isinstance(sched, AbsBatchStepScheduler) and "last_epoch" in state:
                # ESPnet calls scheduler.step() right after this optimizer step: the
                # next update then uses the schedule's first value, as a fresh run does.
                state["last_epoch"] -= 1
            sched.load_state_dict(state)

    # ------------------------------------------------------------------- state
    def state(self) -> dict:
        """Step and compute counts; with pruning, also the masks and the rewind point."""
        out = {"step": self.step, "compute": self.compute.state_dict()}
        if self.schedule is None and self.dynamic is None:  # dynamic pathways save masks too
            return out
        masks = self.model.pathway_masks
        out.update({
            "masks": {k: {n: m.cpu() for n, m in v.items()} for k, v in masks.masks.items()},
            "meta": masks.meta,
            "rewind_state": None if self.rewind_state is None
            else {n: w.cpu() for n, w in self.rewind_state.items()},
            "dynamic": None if self.dynamic is None else self.dynamic.state(),
        })
        return out

    def load_state(self, state: dict, source: str = "checkpoint") -> None:
        self.step = int(state["step"])
        if "compute" in state:
            self.compute.load_state_dict(state["compute"])
        if "masks" not in state:
            logging.info("Resumed at step %d from %s", self.step, source)
            return
        masks = PathwayMasks(state["masks"], state["meta"], source=source)
        self._share_if_lap(masks)
        self.model.set_pathway_masks(masks)
        device = next(iter(self.params.values())).device
        self.rewind_state = None if state["rewind_state"] is None else {
            n: w.to(device) for n, w in state["rewind_state"].items()}
        if self.dynamic is not None and state.get("dynamic") is not None:  # dynamic pathways
            self.dynamic.load_state(state["dynamic"])
        self._cache_masks = None
        self._check_cache()
        logging.info("Resumed the pathway state at step %d from %s", self.step, source)

    def _add_state(self, optimizer, state_dict: dict) -> dict:
        state_dict[CHECKPOINT_KEY] = self.state()
        return state_dict

    def _pop_state(self, optimizer, state_dict: dict) -> dict:
        state_dict = dict(state_dict)
        state = state_dict.pop(CHECKPOINT_KEY, None)
        if state is not None:
            self.load_state(state, source=f"{self.output_dir}/checkpoint.pth")
        return state_dict

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        masks = self.model.pathway_masks
        made = self.schedule is not None or self.dynamic is not None
        if masks is not None and made and is_writer():
            out = self.output_dir / "masks.pth"
            with atomic_output(out) as tmp:
                masks.save(tmp)
            logging.info("Wrote %s\n%s", out, masks.summary_table())
        if self.dynamic is not None:  # dynamic pathways: stop observing, report the drift
            self.dynamic.close()
            if is_writer():
                logging.info("Wrote %s", self.dynamic.write_drift(self.output_dir))


class PathwayTrainer(Trainer):
    """ESPnet Trainer with pathway masking and pruning (see the module docstring)."""

    @classmethod
    @typechecked
    def build_options(cls, args: argparse.Namespace) -> TrainerOptions:
        return build_dataclass(PathwayTrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        group = parser.add_argument_group("Pathway pruning related")
        group.add_argument("--pruning", type=str, default="none", choices=PRUNING_METHODS,
                           help="Iterative magnitude pruning during training (imp), with "
                           "lottery-ticket rewinding (lth), gradual random pruning on the "
                           "same schedule (random), dynamic pathways (dynamic: "
                           "espnet_pathways.dynamic), or none")
        group.add_argument("--pruning_languages", type=str, nargs="*", default=[],
                           help="Pathways to prune (default: all --languages)")
        group.add_argument("--pruning_shared", type=str2bool, default=False,
                           help="One mask shared by the pruned languages "
                           "(language-agnostic pruning, LAP)")
        group.add_argument("--pruning_target_sparsity", type=float, default=0.7)
        group.add_argument("--pruning_fraction", type=float, default=0.2,
                           help="Fraction p of the remaining weights removed per round")
        group.add_argument("--pruning_every", type=int, default=500,
                           help="Steps T between pruning rounds")
        group.add_argument("--pruning_start", type=int, default=0,
                           help="First round at pruning_start + pruning_every")
        group.add_argument("--pruning_scope", type=str, default="global",
                           choices=["global", "per_tensor"])
        group.add_argument("--pruning_exclude", type=str, nargs="*", default=[],
                           help="Regexes of parameter names never pruned "
                           f"(default: {' '.join(DEFAULT_EXCLUDE)})")
        group.add_argument("--lth_rewind_step", type=int, default=0,
                           help="LTH: step whose weights survivors are rewound to")
        group.add_argument("--random_layer_sparsity_from", type=str, default=None,
                           help="--pruning random: prune each tensor of a language's pathway "
                           "to its sparsity in this mask file's mask of that language (e.g. "
                           "the LSP masks: random positions, the LSP layer-wise sparsity); "
                           "default: every tensor at about the global rate")
        group.add_argument("--mask_updates", type=str2bool, default=True,
                           help="Mask optimizer updates (momentum, weight decay) to the "
                           "pathways of the languages in each step")
        add_dynamic_arguments(group)  # dynamic pathways
        # add_language (espnet_pathways/add_language.py)
        group.add_argument("--freeze_pathways", type=str, nargs="*", default=[],
                           help="Languages whose pathways stay bit-identical: nothing they "
                           "read changes (adding a language in frozen mode)")

    @classmethod
    def train_one_epoch(cls, *args, **kwargs) -> bool:
        """ESPnet's epoch, counted in the run's compute (``epochs``)."""
        result = super().train_one_epoch(*args, **kwargs)
        model = kwargs["model"] if "model" in kwargs else args[0]
        controller = getattr(getattr(model, "module", model), "pathway_controller", None)
        if controller is not None:
            controller.compute.epochs += 1
            if controller.compute.epochs == 1 and is_writer():  # a run's first epoch
                for message in cycle_mismatches(controller.schedulers, controller.compute.steps,
                                                controller.options.max_epoch):
                    logging.warning(message)
            if controller.dynamic is not None:  # dynamic pathways: ranks agree before
                # ESPnet's (rank 0's) checkpoint
                controller.dynamic.end_of_epoch()
        return result

    @classmethod
    def run(cls, model, optimizers, schedulers, *args, trainer_options, **kwargs) -> None:
        if getattr(trainer_options, "grad_noise", False) and (
            model.pathway_masks is not None or trainer_options.pruning != "none"
        ):
            raise ValueError("--grad_noise true would move pruned weights: not supported "
                             "with pathway masks or pruning")
        controller = PathwayController(model, optimizers, trainer_options, schedulers)
        model.pathway_controller = controller
        try:
            super().run(model, optimizers, schedulers, *args,
                        trainer_options=trainer_options, **kwargs)
            if is_writer():
                path = controller.compute.write(trainer_options.output_dir)
                logging.info("Wrote %s: %s", path, controller.compute.as_dict())
        finally:
            controller.close()
            del model.pathway_controller
