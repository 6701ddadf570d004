"""PathwayTrainer: ESPnet's Trainer plus language-conditioned pruning and masked updates.

ESPnet's training loop (``Trainer.train_one_epoch``) is used unchanged.  What pathways
need is attached around it through the optimizers' step hooks:

* **Masked update** (pre/post ``optimizer.step()``, :class:`~espnet_pathways.pruning.
  MaskedUpdate`): a weight that no language of the current step owns does not move, not
  through momentum, Adam moments or weight decay either.  "Owned" is the union of the
  masks of the languages the model saw since the last step.
* **Iterative magnitude pruning** (post step): every ``--pruning_every`` steps a fraction
  ``--pruning_fraction`` of the remaining weights of each pruned pathway is removed, until
  ``--pruning_target_sparsity``; then the masks stay fixed.  ``--pruning lth`` also
  rewinds the survivors to their values at step ``--lth_rewind_step``.
  ``--pruning_languages`` says which pathways are pruned (one for language-specific
  pruning, all of them with ``--pruning_shared true`` for language-agnostic pruning).
* The current masks and the step count are saved in the output directory at every epoch
  end (``pruning_state.pth``, read back on ``--resume``) and as ``masks.pth`` at the end.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import Dict, List, Optional

import torch
from typeguard import typechecked

from espnet2.train.trainer import Trainer, TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.types import str2bool

from espnet_pathways.masks import (
    DEFAULT_EXCLUDE,
    PathwayMasks,
    apply_masks_,
    prunable_parameter_names,
)
from espnet_pathways.pruning import IMPSchedule, MaskedUpdate, lth_rewind_, magnitude_prune

PRUNING_METHODS = ("none", "imp", "lth")


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
    mask_updates: bool


class PathwayController:
    """Holds the pruning state of one training run and acts at every optimizer step."""

    def __init__(self, model, optimizers, options: PathwayTrainerOptions) -> None:
        self.model = model
        self.options = options
        self.step = 0
        self.output_dir = Path(options.output_dir)
        self.state_file = self.output_dir / "pruning_state.pth"
        self.rewind_state: Optional[Dict[str, torch.Tensor]] = None
        self.params = dict(model.named_parameters())
        exclude = options.pruning_exclude or list(DEFAULT_EXCLUDE)
        self.names = prunable_parameter_names(model, exclude=exclude)
        self.schedule: Optional[IMPSchedule] = None

        if options.pruning not in PRUNING_METHODS:
            raise ValueError(f"--pruning must be one of {PRUNING_METHODS}, got {options.pruning!r}")
        if options.pruning != "none":
            self._start_pruning()
        if options.resume and self.state_file.exists():
            self._load_state()
        if model.pathway_masks is not None:
            # Weights outside every pathway are never used: make them exactly zero.
            apply_masks_(model, model.pathway_masks.union())
        self.handles = []
        for opt in optimizers:
            if model.pathway_masks is not None and options.mask_updates:
                masked = MaskedUpdate({n: self.params[n] for n in self._masked_names()}, opt)
                self.handles.append(masked.register_hooks(self._owned))
            self.handles.append(opt.register_step_post_hook(self._after_step))

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
                "output_dir": str(o.output_dir),
            }
            masks = PathwayMasks.from_model_dense(self.model, langs, self.names, meta=meta)
            if o.pruning_shared:  # one mask object for all: one masked forward per batch
                shared = masks.masks[langs[0]]
                masks.masks = {lang: shared for lang in langs}
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

    def _weights(self) -> Dict[str, torch.Tensor]:
        return {n: self.params[n].detach().clone() for n in self.names}

    # ------------------------------------------------------------------- hooks
    def _owned(self):
        """Union of the masks of the languages seen since the last step (pre-step hook)."""
        langs = sorted(self.model.step_languages)
        if not langs:
            return None
        masks = self.model.pathway_masks
        owned = {n: m.clone() for n, m in masks.for_language(langs[0]).items()}
        for lang in langs[1:]:
            for n, m in masks.for_language(lang).items():
                owned[n] |= m
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for m in owned.values():  # the gradient is all-reduced: so is ownership
                buf = m.to(torch.uint8)
                torch.distributed.all_reduce(buf, op=torch.distributed.ReduceOp.MAX)
                m.copy_(buf.bool())
        return owned

    def _after_step(self, optimizer, args, kwargs) -> None:
        self.model.step_languages.clear()
        self.step += 1
        o = self.options
        if o.pruning == "lth" and self.step == o.lth_rewind_step and self.rewind_state is None:
            self.rewind_state = self._weights()
            logging.info("LTH: saved the rewind point at step %d", self.step)
        if self.schedule is not None and self.schedule.due(self.step):
            self.prune()

    # ----------------------------------------------------------------- pruning
    @torch.no_grad()
    def prune(self) -> None:
        """One IMP round at the current step (magnitudes of the current weights)."""
        target = self.schedule.sparsity_at(self.step)
        masks = self.model.pathway_masks
        weights = {n: self.params[n].detach() for n in self.names}
        o = self.options
        if o.pruning_shared:
            new = magnitude_prune(weights, target, o.pruning_scope, current=masks.masks[self.prune_langs[0]])
            for lang in self.prune_langs:
                masks.masks[lang] = new
        else:
            for lang in self.prune_langs:
                masks.masks[lang] = magnitude_prune(
                    weights, target, o.pruning_scope, current=masks.masks[lang]
                )
        masks.meta["step"] = self.step
        masks.meta["sparsity"] = {lang: masks.sparsity(lang) for lang in self.prune_langs}
        union = masks.union()
        if o.pruning == "lth" and self.rewind_state is not None:
            lth_rewind_(self.model, union, self.rewind_state)
        else:
            apply_masks_(self.model, union)
        logging.info(
            "Pruned at step %d to sparsity %.4f (%s)%s", self.step, target,
            ", ".join(f"{lang}={masks.sparsity(lang):.4f}" for lang in self.prune_langs),
            "; rewound survivors (LTH)" if o.pruning == "lth" and self.rewind_state else "",
        )

    # ------------------------------------------------------------------- state
    def save_state(self) -> None:
        if self.model.pathway_masks is None:
            return
        tmp = self.state_file.with_suffix(".tmp")
        torch.save(
            {"step": self.step, "masks": {k: {n: m.cpu() for n, m in v.items()}
                                          for k, v in self.model.pathway_masks.masks.items()},
             "meta": self.model.pathway_masks.meta, "rewind_state": self.rewind_state},
            tmp,
        )
        tmp.replace(self.state_file)

    def _load_state(self) -> None:
        state = torch.load(self.state_file, map_location="cpu", weights_only=False)
        self.step = int(state["step"])
        masks = PathwayMasks(state["masks"], state["meta"], source=str(self.state_file))
        self.model.set_pathway_masks(masks)
        self.rewind_state = state["rewind_state"]
        logging.info("Resumed pathway state at step %d from %s", self.step, self.state_file)

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        masks = self.model.pathway_masks
        if masks is not None and self.schedule is not None:
            self.save_state()
            out = self.output_dir / "masks.pth"
            masks.save(out)
            logging.info("Wrote %s\n%s", out, masks.summary_table())


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
                           "lottery-ticket rewinding (lth), or none")
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
        group.add_argument("--mask_updates", type=str2bool, default=True,
                           help="Mask optimizer updates (momentum, weight decay) to the "
                           "pathways of the languages in each step")

    @classmethod
    def run(cls, model, optimizers, *args, trainer_options, **kwargs) -> None:
        controller = PathwayController(model, optimizers, trainer_options)
        model.pathway_controller = controller
        try:
            super().run(model, optimizers, *args, trainer_options=trainer_options, **kwargs)
        finally:
            controller.close()
            del model.pathway_controller

    @classmethod
    def train_one_epoch(cls, model, *args, **kwargs) -> bool:
        retval = super().train_one_epoch(model, *args, **kwargs)
        core = getattr(model, "module", model)
        controller = getattr(core, "pathway_controller", None)
        if controller is not None:
            controller.save_state()
        return retval
