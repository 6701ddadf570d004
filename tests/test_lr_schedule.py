"""The cosine learning-rate cycle is checked against the run's real length."""
from __future__ import annotations

import logging

import pytest
import torch
from espnet2.schedulers.cosine_anneal_warmup_restart import CosineAnnealingWarmupRestarts
from espnet2.schedulers.warmup_lr import WarmupLR
from espnet2.train.trainer import Trainer

from helpers import tiny_model
from test_trainer import options, train_steps

from espnet_pathways.lr_schedule import cycle_mismatches
from espnet_pathways.trainer import PathwayController, PathwayTrainer


def cosine(first_cycle_steps: int) -> CosineAnnealingWarmupRestarts:
    opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    return CosineAnnealingWarmupRestarts(opt, first_cycle_steps=first_cycle_steps,
                                         max_lr=1e-3, min_lr=1e-5, warmup_steps=2)


def test_a_cycle_over_the_whole_run_passes():
    assert cycle_mismatches([cosine(30)], steps_per_epoch=10, max_epoch=3) == []


@pytest.mark.parametrize("cycle,says", [(20, "restart its warm-up"), (40, "not have annealed")])
def test_a_cycle_of_another_length_says_what_happens_and_the_value_to_set(cycle, says):
    (message,) = cycle_mismatches([cosine(cycle)], steps_per_epoch=10, max_epoch=3)
    assert says in message
    assert f"first_cycle_steps={cycle}" in message and "first_cycle_steps: 30" in message


def test_schedulers_without_a_cycle_are_not_checked():
    opt = torch.optim.Adam(torch.nn.Linear(2, 2).parameters(), lr=1e-3)
    assert cycle_mismatches([WarmupLR(opt, warmup_steps=5)], steps_per_epoch=10,
                            max_epoch=3) == []


def test_the_trainer_warns_after_the_first_epoch(tmp_path, monkeypatch, caplog):
    model = tiny_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = CosineAnnealingWarmupRestarts(opt, first_cycle_steps=100, max_lr=1e-3,
                                          min_lr=1e-5, warmup_steps=2)
    controller = PathwayController(model, [opt], options(tmp_path, max_epoch=4), [sched])
    model.pathway_controller = controller

    def three_steps(*args, **kwargs) -> bool:  # ESPnet's epoch, here three steps
        train_steps(model, opt, [[0, 1], [2, 3], [0, 2]])
        return False

    monkeypatch.setattr(Trainer, "train_one_epoch", classmethod(three_steps))
    with caplog.at_level(logging.WARNING):
        PathwayTrainer.train_one_epoch(model=model)
    assert "set first_cycle_steps: 12" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # only the first epoch is checked
        PathwayTrainer.train_one_epoch(model=model)
    assert "first_cycle_steps" not in caplog.text
    controller.close()
