"""A check on step-counted learning-rate cycles against the run's real length.

Why: the recipe's dense configuration anneals its learning rate over the whole run with
ESPnet's ``CosineAnnealingWarmupRestarts`` (``conf/train_dense.yaml``), whose
``first_cycle_steps`` counts optimizer steps, not epochs.  It must equal ``max_epoch``
times the batches of an epoch.  When it does not, nothing fails: a shorter cycle
silently warms up again in the middle of training (the restart), a longer one ends the
run before the rate has come down.  Both show only as a worse model.  The number of
batches per epoch is known once the first epoch has run, so the trainer checks then
and says in its log what the value should be.
"""
from __future__ import annotations

from typing import Iterable, List

from espnet2.schedulers.cosine_anneal_warmup_restart import CosineAnnealingWarmupRestarts

__all__ = ["cycle_mismatches"]


def cycle_mismatches(schedulers: Iterable, steps_per_epoch: int, max_epoch: int) -> List[str]:
    """One message per cosine scheduler whose first cycle is not the whole run.

    Args:
        schedulers: the run's schedulers (any kind; only cosine cycles are checked).
        steps_per_epoch: optimizer steps the first epoch took.
        max_epoch: the run's ``max_epoch``.
    """
    wanted = steps_per_epoch * max_epoch
    messages = []
    for sched in schedulers:
        if not isinstance(sched, CosineAnnealingWarmupRestarts):
            continue
        if sched.first_cycle_steps != wanted:
            messages.append(
                f"scheduler_conf.first_cycle_steps={sched.first_cycle_steps}, but this run "
                f"takes {steps_per_epoch} steps per epoch x max_epoch {max_epoch} = {wanted}: "
                "the learning rate will "
                + ("restart its warm-up before the end of training"
                   if sched.first_cycle_steps < wanted else "not have annealed when training ends")
                + f"; set first_cycle_steps: {wanted} for one cycle over the run"
            )
    return messages
