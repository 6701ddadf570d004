"""Kill -9 between an IMP round and the next checkpoint, rerun with --resume: the same
masks and weights as a run that was never interrupted (the pruning state travels inside
ESPnet's checkpoint.pth)."""
from __future__ import annotations

import multiprocessing

import torch

from helpers import tiny_model
from training_runs import killed_run, run_training

from espnet_pathways.masks import PathwayMasks

#: 3 epochs of 4 steps; IMP rounds at steps 3, 6, 9, 12; checkpoints at steps 4, 8, 12.
PLAN = [[[0, 0], [1, 1], [0, 1], [1, 0]]] * 3
OPTS = dict(max_epoch=3, pruning="imp", pruning_languages=["en", "fr"], pruning_every=3,
            pruning_fraction=0.3, pruning_target_sparsity=0.7)


def test_kill_between_prune_and_checkpoint_then_resume_equals_uninterrupted(tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    ref_dir.mkdir()
    run_dir.mkdir()
    reference = tiny_model(seed=0)
    run_training(reference, ref_dir, PLAN, **OPTS)

    # Killed right after the round at step 6: the last checkpoint is from step 4.
    proc = multiprocessing.get_context("spawn").Process(
        target=killed_run, args=(str(run_dir), PLAN, 2, OPTS))
    proc.start()
    proc.join(timeout=300)
    assert proc.exitcode == -9, proc.exitcode
    assert (run_dir / "checkpoint.pth").exists() and not (run_dir / "masks.pth").exists()
    saved = torch.load(run_dir / "checkpoint.pth", weights_only=False)
    assert saved["optimizers"][0]["espnet_pathways"]["step"] == 4

    resumed = tiny_model(seed=1)  # different init: everything must come from the checkpoint
    run_training(resumed, run_dir, PLAN, resume=True, **OPTS)

    want = dict(reference.named_parameters())
    for name, p in resumed.named_parameters():
        assert torch.equal(p, want[name]), name
    a, b = PathwayMasks.load(ref_dir / "masks.pth"), PathwayMasks.load(run_dir / "masks.pth")
    assert a.meta["step"] == b.meta["step"] == 12
    for lang in ("en", "fr"):
        assert abs(b.sparsity(lang) - 0.7) < 1e-3
        for name, m in a.for_language(lang).items():
            assert torch.equal(m, b.for_language(lang)[name]), (lang, name)
