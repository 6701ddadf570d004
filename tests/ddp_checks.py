"""One rank of the 2-process DDP test (``torch.multiprocessing.spawn`` target).

Each rank trains the tiny pathway model through ``PathwayTrainer.run`` with ESPnet's DDP
(gloo, CPU) and checks, between every two steps, the invariants of pathway training:

* the replicas (weights, Adam moments, masks) are bit-identical on both ranks;
* weights and Adam moments inside the union but outside the step's owners (the union of
  both ranks' languages at that step, under the masks the forward used) did not change;
* weights and Adam moments outside the union of the masks are exactly zero;
* the step count advanced by one and some owned weight moved.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, List, Optional

import torch
import torch.distributed as dist

from espnet_pathways.bin.asr_pathways_train import leave_process_group
from helpers import LANGS, tiny_model
from training_runs import run_training

#: Per rank, per epoch, per step: language ids.  Steps where the ranks differ, agree,
#: and mix languages inside one batch.
PATHWAY_PLAN = {
    0: [[[0, 0], [1, 1], [0, 1], [2, 2], [3, 3], [0, 2], [1, 1], [2, 3], [0, 0], [3, 1], [2, 2]],
        [[1, 1], [0, 0], [3, 3], [2, 0], [1, 1], [0, 0], [2, 2], [3, 0], [1, 2], [0, 0], [3, 3]]],
    1: [[[1, 1], [1, 1], [2, 3], [2, 2], [0, 0], [3, 3], [1, 1], [0, 0], [2, 2], [3, 1], [0, 0]],
        [[1, 1], [2, 2], [3, 3], [1, 3], [0, 0], [1, 1], [2, 2], [0, 0], [3, 3], [0, 0], [1, 0]]],
}
#: IMP from the dense model: only the pruned languages (en, fr) have pathways.
IMP_PLAN = {
    0: [[[0, 0], [1, 1], [0, 1], [0, 0], [1, 1], [0, 0], [1, 0], [0, 0], [1, 1], [0, 0], [1, 1]],
        [[1, 1], [0, 0], [1, 1], [0, 1], [0, 0], [1, 1], [0, 0], [1, 1], [0, 0], [1, 0], [0, 0]]],
    1: [[[1, 1], [1, 1], [0, 0], [1, 1], [0, 0], [0, 0], [0, 0], [1, 1], [0, 1], [0, 0], [1, 1]],
        [[0, 0], [0, 0], [1, 1], [0, 0], [1, 1], [0, 0], [1, 1], [0, 1], [0, 0], [1, 0], [0, 0]]],
}


def gathered_equal(t: torch.Tensor) -> bool:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return all(torch.equal(parts[0], p) for p in parts[1:])


class StepChecker:
    """The ``check`` callback of :class:`training_runs.PlannedBatches` for one rank."""

    def __init__(self, model, plans: Dict[int, list]) -> None:
        self.model = model
        # owners of global step k: the languages of every rank's batch at step k
        ranks = sorted(plans)
        flat = {r: [langs for epoch in plans[r] for langs in epoch] for r in ranks}
        self.owners = [sorted({LANGS[i] for r in ranks for i in flat[r][k]})
                       for k in range(len(flat[ranks[0]]))]
        self.k = 0
        self.before: Optional[dict] = None
        self.checked = 0
        self.rounds_seen = set()

    def moments(self, p: torch.Tensor) -> List[torch.Tensor]:
        opt = self.model.pathway_controller.optimizers[0]
        st = opt.state.get(p, {})
        return [st[k] if k in st else torch.zeros_like(p) for k in ("exp_avg", "exp_avg_sq")]

    def __call__(self, i: int, langs: Optional[List[int]]) -> None:
        model = self.model
        controller = model.pathway_controller
        params = dict(model.named_parameters())
        masks = model.pathway_masks
        if self.before is not None:
            b = self.before
            assert controller.step == b["step"] + 1, (controller.step, b["step"])
            union = masks.union()
            moved = False
            for n, owned in b["owned"].items():
                p = params[n].detach()
                frozen = union[n] & ~owned
                assert torch.equal(p[frozen], b["params"][n][frozen]), f"step {self.k}: {n} moved"
                for now, old in zip(self.moments(params[n]), b["moments"][n]):
                    assert torch.equal(now[frozen], old[frozen]), f"step {self.k}: {n} moment"
                    assert torch.all(now[~union[n]] == 0), f"step {self.k}: {n} moment outside"
                assert torch.all(p[~union[n]] == 0), f"step {self.k}: {n} outside the union"
                moved |= bool((p[owned] != b["params"][n][owned]).any())
            assert moved, f"step {self.k}: no owned weight moved"
            flat = torch.cat([p.detach().reshape(-1) for p in params.values()])
            assert gathered_equal(flat), f"step {self.k}: replicas differ"
            moments = torch.cat([m.reshape(-1) for p in params.values() for m in self.moments(p)])
            assert gathered_equal(moments), f"step {self.k}: Adam moments differ"
            bits = torch.cat([m.reshape(-1) for lang in masks.languages
                              for m in masks.for_language(lang).values()]).to(torch.uint8)
            assert gathered_equal(bits), f"step {self.k}: masks differ"
            self.rounds_seen.add(round(max(masks.sparsity(x) for x in masks.languages), 4))
            self.checked += 1
            self.k += 1
            self.before = None
        if langs is None:
            return
        owners = self.owners[self.k]
        owned = {}
        for n in masks.param_names:
            acc = torch.zeros_like(masks.for_language(owners[0])[n])
            for lang in owners:
                acc |= masks.for_language(lang)[n]
            owned[n] = acc
        self.before = {
            "step": controller.step,
            "owned": owned,
            "params": {n: params[n].detach().clone() for n in owned},
            "moments": {n: [m.clone() for m in self.moments(params[n])] for n in owned},
        }


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """Both runs (pathways with IMP rounds, IMP from dense) on one rank."""
    from test_model import random_pathways

    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        summary = {}
        for kind, plans in (("pathways", PATHWAY_PLAN), ("imp", IMP_PLAN)):
            model = tiny_model(seed=0)
            if kind == "pathways":
                model.set_pathway_masks(random_pathways(model, sparsity=0.3))
                extra = dict(pruning="imp", pruning_every=5, pruning_fraction=0.2,
                             pruning_target_sparsity=0.6)
            else:
                extra = dict(pruning="imp", pruning_languages=["en", "fr"], pruning_every=5,
                             pruning_fraction=0.3, pruning_target_sparsity=0.7)
            checker = StepChecker(model, plans)
            out = Path(out_dir) / kind
            out.mkdir(parents=True, exist_ok=True)
            run_training(model, out, plans[rank], rank=rank, world=world, check=checker,
                         **extra)
            summary[kind] = (checker.checked, sorted(checker.rounds_seen))
            if rank == 0:
                summary[f"{kind}_compute"] = json.loads((out / "compute.json").read_text())
        if rank == 0:
            torch.save(summary, Path(out_dir) / "summary.pt")
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other rank may never reach it
        raise
    leave_process_group()  # rank 0 writes the summary last; see test_train_ddp_exit
