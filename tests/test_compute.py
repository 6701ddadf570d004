"""compute.json: every training run counts its own optimizer steps and utterances per
language (issue 10: the compute table), through ESPnet's real training loop."""
from __future__ import annotations

import json

import pytest
import torch

from helpers import tiny_model
from training_runs import run_training

from espnet_pathways.compute import ComputeCounter

#: 2 epochs of 3 steps: en+en, fr+fr, en+fr.
PLAN = [[[0, 0], [1, 1], [0, 1]]] * 2


def read(path):
    return json.loads((path / "compute.json").read_text())


def test_dense_run_writes_its_steps_and_utterances_per_language(tmp_path):
    run_training(tiny_model(), tmp_path, PLAN)
    c = read(tmp_path)
    assert c == {"steps": 6, "epochs": 2,
                 "steps_per_lang": {"en": 4, "fr": 4, "it": 0, "nl": 0},
                 "utts_per_lang": {"en": 6, "fr": 6, "it": 0, "nl": 0}}


def test_a_skipped_step_is_not_counted(tmp_path):
    # the fr+fr batch of epoch 1 has an inf sample: ESPnet skips that optimizer step
    run_training(tiny_model(), tmp_path, PLAN, nonfinite=[(1, 1)])
    c = read(tmp_path)
    assert c["steps"] == 5
    assert c["steps_per_lang"]["fr"] == 3 and c["utts_per_lang"]["fr"] == 4
    assert c["utts_per_lang"]["en"] == 6


def test_a_resumed_run_continues_the_counts_of_its_checkpoint(tmp_path):
    run_training(tiny_model(), tmp_path, PLAN, max_epoch=1)
    assert read(tmp_path)["steps"] == 3
    saved = torch.load(tmp_path / "checkpoint.pth", weights_only=False)
    assert saved["optimizers"][0]["espnet_pathways"]["compute"]["steps"] == 3
    run_training(tiny_model(seed=1), tmp_path, PLAN, max_epoch=2, resume=True)
    c = read(tmp_path)
    assert c["steps"] == 6 and c["epochs"] == 2
    assert c["utts_per_lang"] == {"en": 6, "fr": 6, "it": 0, "nl": 0}


def test_a_pruning_run_counts_only_its_own_steps(tmp_path):
    """A pruning run from a 'dense' model counts its steps, not the dense model's (the
    validation batch holds en and fr, so both have pathways; only fr trains)."""
    run_training(tiny_model(), tmp_path, [[[1, 1]] * 4], max_epoch=1, pruning="imp",
                 pruning_languages=["en", "fr"], pruning_every=2, pruning_fraction=0.5,
                 pruning_target_sparsity=0.7)
    c = read(tmp_path)
    assert c["steps"] == 4 and c["steps_per_lang"] == {"en": 0, "fr": 4, "it": 0, "nl": 0}
    assert (tmp_path / "masks.pth").exists()


def test_counter_round_trips_its_state_and_refuses_unknown_ids():
    a = ComputeCounter(["en", "fr"])
    a.see([0, 1, 1])
    a.step_taken(a.pending_vector())
    b = ComputeCounter(["en", "fr"])
    b.load_state_dict(a.state_dict())
    assert b.as_dict() == a.as_dict() == {
        "steps": 1, "epochs": 0, "steps_per_lang": {"en": 1, "fr": 1},
        "utts_per_lang": {"en": 1, "fr": 2}}
    with pytest.raises(IndexError):
        a.see([5])  # an id outside --languages is a bug upstream, never silently counted
