"""Pathway training under torch DDP: two gloo ranks on the CPU through ESPnet's Trainer.

The per-step invariants are checked inside each rank (``ddp_checks.StepChecker``):
replicas bit-identical, nothing outside the step's owners moved (weights and Adam
moments), zeros outside the union, masks identical; ranks hold different languages on
some steps and IMP rounds happen inside both runs (pathways, and IMP from the dense model).
"""
from __future__ import annotations

import socket

import torch
import torch.multiprocessing as mp

from ddp_checks import worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_rank_ddp_pathway_and_imp_runs_keep_every_invariant(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    summary = torch.load(tmp_path / "summary.pt")
    for kind in ("pathways", "imp"):
        checked, sparsities = summary[kind]
        assert checked == 22, (kind, checked)  # every step of both epochs was checked
        assert len(sparsities) >= 3, (kind, sparsities)  # pruning rounds inside the run
    assert (tmp_path / "imp" / "checkpoint.pth").exists()
    assert (tmp_path / "imp" / "masks.pth").exists()
