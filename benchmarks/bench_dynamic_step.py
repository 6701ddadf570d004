#!/usr/bin/env python3
"""What dynamic pathways cost on top of fixed pathways: step time, one re-derivation, memory.

Same architecture (``--config``, default conf/train_dense.yaml), same language-homogeneous
batches, same optimizer (Adam), both through ``PathwayController`` (masked update):

* fixed   -- 70% sparse per-language masks, never changed (``--pruning none``);
* dynamic -- ``--pruning dynamic`` from the 50% magnitude mask, at the 70% target from the
             first re-derivation on (``pruning_fraction`` 1): the gradient hooks run in
             every step (the EMA of |dL_l/d(W m_l)|) and the masks are re-derived every
             ``--n_batches`` steps, i.e. once per timed run (the recipe: every 30 steps).
             One re-derivation (all four languages) is also timed alone.

Step times are the median of ``--repeats`` interleaved runs over the same batches.  "Held"
is what dynamic pathways keep in addition: the float32 statistics (one per language per
prunable weight) and the pool / start masks.

    python benchmarks/bench_dynamic_step.py [--batch 8 --seconds 2 --repeats 3 --threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pathway_step import LANGS, ROOT, batches, build, overlapping_masks, run_once  # noqa: E402

VARIANTS = ["fixed", "dynamic"]


def options(pruning: str, every: int) -> SimpleNamespace:
    return SimpleNamespace(
        output_dir=tempfile.mkdtemp(), resume=False, pruning=pruning, pruning_languages=[],
        pruning_shared=False, pruning_target_sparsity=0.7, pruning_fraction=1.0,
        pruning_every=every, pruning_start=0, pruning_scope="global", pruning_exclude=[],
        lth_rewind_step=0, mask_updates=True, dynamic_score="taylor", dynamic_ema_decay=0.9,
        dynamic_start_sparsity=0.5, dynamic_freeze_fraction=1.0, max_epoch=1,
        num_iters_per_epoch=10**7)


def setup(variant: str, args):
    from espnet_pathways.masks import prunable_parameter_names
    from espnet_pathways.trainer import PathwayController

    model = build(args.config, args.vocab)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    if variant == "fixed":
        names = prunable_parameter_names(model)
        shapes = {n: p.shape for n, p in model.named_parameters() if n in names}
        model.set_pathway_masks(overlapping_masks(shapes, 0.7, 0.05))
    pruning = "none" if variant == "fixed" else "dynamic"
    controller = PathwayController(model, [opt], options(pruning, args.n_batches))
    model.pathway_controller = controller
    data = batches(args.n_batches, args.batch, args.seconds, args.vocab, homogeneous=True)
    return model, opt, data, controller


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "conf" / "train_dense.yaml")
    p.add_argument("--vocab", type=int, default=100)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--n_batches", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    setups = {v: setup(v, args) for v in VARIANTS}
    for v in VARIANTS:  # warm-up (and statistics for every language)
        run_once(*setups[v][:3])
    times = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for v in VARIANTS:
            times[v].append(run_once(*setups[v][:3]))
    med = {v: statistics.median(t) for v, t in times.items()}

    dyn = setups["dynamic"][3].dynamic
    t = time.perf_counter()
    dyn.rederive(dyn.schedule.freeze_step)  # at the target sparsity: the usual case
    rederive_s = time.perf_counter() - t
    stats_bytes = sum(x.numel() * x.element_size()
                      for d in dyn.stats.ema.values() for x in d.values())
    mask_bytes = sum(m.numel() for m in dyn.pool.values()) * (1 + len(LANGS))  # pool + start masks

    print(f"batch {args.batch} x {args.seconds}s, {args.n_batches} batches, median of "
          f"{args.repeats}, {args.threads} thread(s), torch {torch.__version__}, "
          f"{sum(m.numel() for m in dyn.pool.values())} prunable weights")
    print(f"{'variant':10s} {'step (s)':>9s} {'vs fixed':>9s}   (dynamic: one re-derivation "
          f"per {args.n_batches} steps included)")
    for v in VARIANTS:
        print(f"{v:10s} {med[v]:9.3f} {med[v] / med['fixed']:9.3f}")
    print(f"re-derivation (4 languages): {rederive_s:.3f} s")
    hooks = med["dynamic"] - rederive_s / args.n_batches
    print(f"dynamic step without its re-derivation share: {hooks:.3f} s "
          f"({hooks / med['fixed']:.3f} x fixed)")
    print(f"held in addition: statistics {stats_bytes / 2**20:.1f} MB, pool and start masks "
          f"{mask_bytes / 2**20:.1f} MB")


if __name__ == "__main__":
    main()
