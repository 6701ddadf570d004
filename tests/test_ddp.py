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

from ddp_checks import IMP_PLAN, PATHWAY_PLAN, worker
from helpers import LANGS


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
    for kind, plans in (("pathways", PATHWAY_PLAN), ("imp", IMP_PLAN)):
        assert summary[f"{kind}_compute"] == expected_compute(plans), kind


def expected_compute(plans):
    """compute.json of a DDP run: a step counts for every language of any rank's batch;
    utterances are summed over the ranks."""
    steps = [[langs for epoch in plans[r] for langs in epoch] for r in sorted(plans)]
    per_lang = {lang: 0 for lang in LANGS}
    utts = {lang: 0 for lang in LANGS}
    for step in zip(*steps):
        ids = [i for rank_batch in step for i in rank_batch]
        for i in set(ids):
            per_lang[LANGS[i]] += 1
        for i in ids:
            utts[LANGS[i]] += 1
    return {"steps": len(steps[0]), "epochs": 2, "steps_per_lang": per_lang,
            "utts_per_lang": utts}
