"""Tiny training runs through ESPnet's own ``Trainer.run`` (PathwayTrainer), in memory.

The tests of DDP, resume-after-kill and skipped steps need the real training loop
(ESPnet's ``train_one_epoch``: DDP wrapping, gradient all-reduce, the non-finite-gradient
skip, checkpoint writing and ``--resume``) but not a corpus on disk: the iterator
factories here hand ESPnet batches from :func:`helpers.tiny_batch`, and a ``check``
callback sees the state between two steps (ESPnet asks the iterator for the next batch
only after the previous step is complete).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch

from helpers import tiny_args, tiny_batch

from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.schedulers.warmup_lr import WarmupLR
from espnet2.train.distributed_utils import DistributedOption

#: ``plan[epoch - 1][step]`` = the language ids of one rank's batch at that step.
Plan = Sequence[Sequence[Sequence[int]]]


class PlannedBatches(AbsIterFactory):
    """Deterministic batches per epoch (``tiny_batch`` seeded by epoch and step).

    ``check(step_in_epoch)`` runs before each batch is handed out and once after the
    last one, i.e. after every completed step of ESPnet's loop.
    """

    def __init__(self, plan: Plan, seed: int = 0,
                 check: Optional[Callable[[int, Optional[List[int]]], None]] = None,
                 nonfinite: Sequence[Tuple[int, int]] = ()) -> None:
        self.plan = plan
        self.seed = seed
        self.check = check
        self.nonfinite = set(nonfinite)  # (epoch, step) whose audio holds an inf sample

    def build_iter(self, epoch: int, shuffle: bool = None) -> Iterator[Tuple[List[str], dict]]:
        steps = self.plan[(epoch - 1) % len(self.plan)]
        for i, langs in enumerate(steps):
            if self.check is not None:
                self.check(i, list(langs))
            batch = tiny_batch(list(langs), seed=self.seed + 1000 * epoch + i)
            if (epoch, i) in self.nonfinite:  # a non-finite loss and gradient: ESPnet skips
                batch["speech"][0, 100] = float("inf")
            yield [f"e{epoch}s{i}u{j}" for j in range(len(langs))], batch
        if self.check is not None:
            self.check(len(steps), None)


def trainer_options(output_dir: Path, **overrides):
    """PathwayTrainerOptions parsed by ASRPathwaysTask's own parser (tiny config)."""
    from espnet_pathways.trainer import PathwayTrainer

    values = dict(output_dir=str(output_dir), use_matplotlib=False, use_tensorboard=False,
                  use_wandb=False, resume=False, max_epoch=2, keep_nbest_models=[1],
                  best_model_criterion=[["valid", "loss", "min"]], grad_clip=100.0, ngpu=0)
    values.update(overrides)
    args = tiny_args(**values)
    return PathwayTrainer.build_options(args)


def optimizer_and_scheduler(model: torch.nn.Module):
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=1e-4)
    return opt, WarmupLR(opt, warmup_steps=5)


def run_training(model, output_dir: Path, plan: Plan, *, rank: int = 0, world: int = 1,
                 check=None, seed: int = 0, nonfinite=(), **overrides) -> None:
    """``PathwayTrainer.run`` over ``plan`` (one rank's view), single process or DDP.

    One intra-op thread in every run (:func:`killed_run`'s too): runs compared bit for bit
    must reduce in the same order (with the default threads, a reference run in the
    pytest process and a resumed one could differ in the last bit on a loaded machine).
    """
    from espnet_pathways.trainer import PathwayTrainer

    options = trainer_options(output_dir, **overrides)
    opt, sched = optimizer_and_scheduler(model)
    dist = DistributedOption(distributed=world > 1, dist_backend="gloo", dist_rank=rank,
                             dist_world_size=world, ngpu=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        PathwayTrainer.run(
            model=model, optimizers=[opt], schedulers=[sched],
            train_iter_factory=PlannedBatches(plan, seed=seed + 100 * rank, check=check,
                                              nonfinite=nonfinite),
            valid_iter_factory=PlannedBatches([[[0, 1]]], seed=999),
            plot_attention_iter_factory=None, trainer_options=options,
            distributed_option=dist,
        )
    finally:
        torch.set_num_threads(threads)


def killed_run(output_dir: str, plan: Plan, kill_after_prunes: int, overrides: dict) -> None:
    """A training run that SIGKILLs itself right after its ``kill_after_prunes``-th IMP
    round (a ``spawn`` target: the parent sees exit code -9)."""
    import os
    import signal

    from helpers import tiny_model

    from espnet_pathways.trainer import PathwayController

    prune = PathwayController.prune
    done = []

    def prune_then_die(self) -> None:
        prune(self)
        done.append(self.step)
        if len(done) == kill_after_prunes:
            os.kill(os.getpid(), signal.SIGKILL)

    PathwayController.prune = prune_then_die
    run_training(tiny_model(seed=0), Path(output_dir), plan, **overrides)
