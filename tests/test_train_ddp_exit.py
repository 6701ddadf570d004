"""The training ranks leave together (``asr_pathways_train.leave_process_group``).

ESPnet never destroys its process group; a rank that left while rank 0 was still writing
its checkpoint sometimes died with SIGABRT ("terminate called without an active
exception"), which failed the CI's 2-rank smoke run.  Here two real gloo ranks check that
the function holds rank 1 until rank 0 has finished its writing, and tears the group down.
"""
from __future__ import annotations

import time
from pathlib import Path

import torch.distributed as dist
import torch.multiprocessing as mp

from espnet_pathways.bin.asr_pathways_train import leave_process_group


def _rank(rank: int, tmp: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous",
                            rank=rank, world_size=2)
    written = Path(tmp) / "written_by_rank0"
    if rank == 0:
        time.sleep(1.0)  # rank 0 writes its model files last
        written.write_text("done")
    leave_process_group()
    assert not dist.is_initialized()
    if rank == 1:
        assert written.exists(), "rank 1 left before rank 0 had finished"
    (Path(tmp) / f"left_{rank}").write_text("ok")


def test_ranks_leave_together_and_destroy_the_group(tmp_path: Path) -> None:
    mp.spawn(_rank, args=(str(tmp_path),), nprocs=2, join=True)
    assert (tmp_path / "left_0").exists() and (tmp_path / "left_1").exists()


def test_without_a_process_group_it_does_nothing() -> None:
    assert not dist.is_initialized()
    leave_process_group()
