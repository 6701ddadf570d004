"""Dynamic pathways under torch DDP (two gloo ranks on the CPU, ESPnet's Trainer): the
ranks see different languages, each accumulates its own gradient statistics, and after
every step both hold the same masks (re-derived from the averaged statistics), the same
weights, and nothing inside the pool outside the step's owners moved."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import List, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ddp_checks import gathered_equal
from espnet_pathways.bin.asr_pathways_train import leave_process_group
from helpers import LANGS, tiny_model
from training_runs import run_training

#: Per rank, per epoch, per step: language ids (different languages on the two ranks).
PLANS = {
    0: [[[0, 0], [1, 1], [2, 2], [3, 3], [0, 1], [2, 2]]] * 2,
    1: [[[1, 1], [3, 3], [0, 0], [2, 2], [3, 0], [1, 1]]] * 2,
}
#: re-derivations at steps 4, 8 and the freeze at 9 (0.75 x 12); epoch 1 ends at step 6,
#: between two re-derivations
OPTS = dict(pruning="dynamic", pruning_every=4, pruning_fraction=0.3,
            pruning_target_sparsity=0.7, dynamic_start_sparsity=0.5,
            dynamic_freeze_fraction=0.75, max_epoch=2, num_iters_per_epoch=6)


class Checker:
    def __init__(self, model, rank: int) -> None:
        self.model = model
        self.owners = [sorted({LANGS[i] for r in PLANS for i in PLANS[r][0][k]})
                       for k in range(len(PLANS[0][0]))]
        self.before: Optional[dict] = None
        self.checked = 0
        self.mask_changes = 0
        self.synced = False

    def __call__(self, i: int, langs: Optional[List[int]]) -> None:
        controller = self.model.pathway_controller
        masks = self.model.pathway_masks
        params = dict(self.model.named_parameters())
        if self.before is not None:
            b = self.before
            pool = controller.dynamic.pool  # at the freeze it shrinks to the masks' union
            for n, owned in b["owned"].items():
                p = params[n].detach()
                frozen = b["pool"][n] & ~owned & pool[n]
                assert torch.equal(p[frozen], b["params"][n][frozen]), (controller.step, n)
                assert torch.all(p[~pool[n]] == 0), (controller.step, n)
            flat = torch.cat([p.detach().reshape(-1) for p in params.values()])
            assert gathered_equal(flat), f"step {controller.step}: replicas differ"
            bits = torch.cat([m.reshape(-1) for lang in masks.languages
                              for m in masks.for_language(lang).values()]).to(torch.uint8)
            assert gathered_equal(bits), f"step {controller.step}: masks differ"
            self.mask_changes += int(not torch.equal(bits, b["bits"]))
            self.checked += 1
            self.before = None
        if langs is None:
            return
        if i == 0 and controller.step == 6:  # epoch 2 starts: statistics averaged at the end of 1
            stats = controller.dynamic.stats
            ema = torch.cat([t.reshape(-1) for lang in LANGS for t in stats.ema[lang].values()])
            assert gathered_equal(ema), "statistics differ after the epoch"
            self.synced = True
        owners = self.owners[i]
        owned = {}
        for n in masks.param_names:
            acc = torch.zeros_like(masks.for_language(owners[0])[n])
            for lang in owners:
                acc |= masks.for_language(lang)[n]
            owned[n] = acc
        self.before = {
            "owned": owned,
            "pool": {n: m.clone() for n, m in controller.dynamic.pool.items()},
            "params": {n: params[n].detach().clone() for n in owned},
            "bits": torch.cat([m.reshape(-1) for lang in masks.languages
                               for m in masks.for_language(lang).values()]).to(torch.uint8),
        }


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = tiny_model(seed=0)
        checker = Checker(model, rank)
        run_training(model, Path(out_dir), PLANS[rank], rank=rank, world=world, check=checker,
                     **OPTS)
        if rank == 0:
            masks = model.pathway_masks
            torch.save({"checked": checker.checked, "changes": checker.mask_changes,
                        "synced": checker.synced,
                        "sparsity": {lang: masks.sparsity(lang) for lang in masks.languages}},
                       Path(out_dir) / "summary.pt")
    except BaseException:
        dist.destroy_process_group()  # no barrier: the other rank may never reach it
        raise
    leave_process_group()  # rank 0 writes the summary last; see test_train_ddp_exit


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_derive_identical_dynamic_masks(tmp_path):
    mp.spawn(worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    summary = torch.load(tmp_path / "summary.pt")
    assert summary["checked"] == 12  # every step of both epochs
    assert summary["changes"] == 3  # steps 4, 8 and the freeze at 9
    assert summary["synced"]  # the statistics were compared at the start of epoch 2
    for lang, s in summary["sparsity"].items():
        assert abs(s - 0.7) < 1e-3, lang
    assert (tmp_path / "masks.pth").exists() and (tmp_path / "mask_drift.json").exists()
