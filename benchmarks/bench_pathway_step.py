#!/usr/bin/env python3
"""Training-step time and peak memory of the pathway model vs the dense model.

Same architecture (conf/train_dense.yaml), same batches, same optimizer (Adam):

* dense               -- the dense transducer;
* pathways-homogeneous -- 70% sparse per-language masks, one language per batch
                          (the recipe's default for pathway training);
* pathways-mixed      -- the same masks, batches mixing all languages (split by the
                          model into one masked pass per language).

Pathway variants include the masked optimizer update (the trainer's step hooks,
``PathwayController``).  The masks overlap as trained pathways do (the paper: ~0.95):
one 70%-sparse random mask, of which each language swaps ``--swap`` (5%) of its kept
weights for pruned ones.  Step times are the median of ``--repeats`` interleaved runs
over the same batches.  Memory is allocated tensor bytes (``torch.profiler`` memory
events, not process RSS): what the model, optimizer state and masks hold between steps,
and the peak a step allocates on top of that.

Targets (issue 8): pathway step <= 1.05x dense with homogeneous batches, <= 1.3x mixed.

    python benchmarks/bench_pathway_step.py [--batch 32 --seconds 2.7 --repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
LANGS = ["en", "fr", "it", "nl"]
VARIANTS = ["dense", "pathways-homogeneous", "pathways-mixed"]


def build(config: Path, vocab: int):
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    parser = ASRPathwaysTask.get_parser()
    args = parser.parse_args(["--token_list", "none", "--output_dir", "unused"])
    for k, v in yaml.safe_load(config.read_text()).items():
        setattr(args, k, v)
    args.token_list = ["<blank>", "<unk>"] + [f"t{i}" for i in range(vocab - 3)] + ["<sos/eos>"]
    args.languages = LANGS
    torch.manual_seed(0)
    return ASRPathwaysTask.build_model(args)


def batches(n: int, batch: int, seconds: float, vocab: int, homogeneous: bool):
    g = torch.Generator().manual_seed(0)
    out = []
    for i in range(n):
        samples = int(seconds * 16000)
        lengths = torch.randint(int(samples * 0.8), samples + 1, (batch,), generator=g)
        u = int(seconds * 10)
        langs = torch.full((batch,), i % 4) if homogeneous else torch.arange(batch) % 4
        out.append(dict(
            speech=torch.randn(batch, samples, generator=g) * 0.1, speech_lengths=lengths,
            text=torch.randint(2, vocab - 1, (batch, u), generator=g),
            text_lengths=torch.full((batch,), u), lang=langs.view(-1, 1),
            lang_lengths=torch.ones(batch, dtype=torch.long)))
    return out


def overlapping_masks(shapes, sparsity: float, swap: float):
    """One random mask at ``sparsity``; each language swaps a fraction ``swap`` of its
    kept weights for pruned ones (same sparsity, overlap ~1 - swap)."""
    from espnet_pathways.masks import PathwayMasks
    from espnet_pathways.pruning import random_masks

    base = random_masks(shapes, sparsity, "global", seed=0)
    flat = torch.cat([m.reshape(-1) for m in base.values()])
    kept, pruned = flat.nonzero().squeeze(1), (~flat).nonzero().squeeze(1)
    n = int(swap * kept.numel())
    masks = {}
    for i, lang in enumerate(LANGS):
        g = torch.Generator().manual_seed(100 + i)
        m = flat.clone()
        m[kept[torch.randperm(kept.numel(), generator=g)[:n]]] = False
        m[pruned[torch.randperm(pruned.numel(), generator=g)[:n]]] = True
        parts = torch.split(m, [s.numel() for s in shapes.values()])
        masks[lang] = {name: p.view(s) for (name, s), p in zip(shapes.items(), parts)}
    return PathwayMasks(masks)


def setup(variant: str, args):
    from espnet_pathways.masks import prunable_parameter_names
    from espnet_pathways.trainer import PathwayController

    model = build(args.config, args.vocab)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    controller = None
    if variant != "dense":
        names = prunable_parameter_names(model)
        shapes = {n: p.shape for n, p in model.named_parameters() if n in names}
        model.set_pathway_masks(overlapping_masks(shapes, 0.7, args.swap))
        opts = SimpleNamespace(output_dir=tempfile.mkdtemp(), resume=False, pruning="none",
                               pruning_languages=[], pruning_shared=False,
                               pruning_target_sparsity=0.7, pruning_fraction=0.2,
                               pruning_every=1, pruning_start=0, pruning_scope="global",
                               pruning_exclude=[], lth_rewind_step=0, mask_updates=True)
        controller = PathwayController(model, [opt], opts)
        model.pathway_controller = controller
    data = batches(args.n_batches, args.batch, args.seconds, args.vocab,
                   homogeneous=variant == "pathways-homogeneous")
    return model, opt, data, controller


def step(model, opt, batch) -> None:
    loss, _, _ = model(**batch)
    loss.sum().backward()
    opt.step()
    opt.zero_grad()


def run_once(model, opt, data) -> float:
    t = time.perf_counter()
    for b in data:
        step(model, opt, b)
    return (time.perf_counter() - t) / len(data)


def held_bytes(model, opt) -> int:
    """Tensor bytes held between steps: weights, optimizer state, masks, the guard's
    cached indices."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    total += sum(v.numel() * v.element_size() for st in opt.state.values()
                 for v in st.values() if torch.is_tensor(v))
    masks = model.pathway_masks
    if masks is not None:
        seen = set()
        for lang in masks.languages:
            mask = masks.for_language(lang)
            if id(mask) not in seen:
                seen.add(id(mask))
                total += sum(m.numel() for m in mask.values())
        controller = getattr(model, "pathway_controller", None)
        for idx in (controller._frozen_cache.values() if controller else ()):
            total += sum(i.numel() * i.element_size() for i in idx.values())
    return total


def peak_step_bytes(model, opt, batch) -> int:
    """Peak of the tensor bytes a step allocates above what was held before it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(model, opt, batch)
    # Each op's own allocations minus frees (children excluded), in start order; frees
    # outside any op are "[memory]" events.  The running sum is the allocated bytes.
    events = sorted(prof.events(), key=lambda e: e.time_range.start)
    cur = peak = 0
    for e in events:
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "conf" / "train_dense.yaml")
    p.add_argument("--vocab", type=int, default=100)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seconds", type=float, default=2.7)
    p.add_argument("--n_batches", type=int, default=4)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--swap", type=float, default=0.05,
                   help="fraction of each pathway's kept weights not shared with the base")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    setups = {v: setup(v, args) for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        run_once(*setups[v][:3])
    times = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):  # interleaved, so drifts hit every variant alike
        for v in VARIANTS:
            times[v].append(run_once(*setups[v][:3]))
    med = {v: statistics.median(t) for v, t in times.items()}
    held = {v: held_bytes(*setups[v][:2]) for v in VARIANTS}
    peak = {v: peak_step_bytes(*setups[v][:2], setups[v][2][0]) for v in VARIANTS}
    print(f"batch {args.batch} x {args.seconds}s, {args.n_batches} batches, median of "
          f"{args.repeats}, {args.threads} threads, torch {torch.__version__}, "
          f"pathway overlap ~{1 - args.swap:.2f}")
    print(f"{'variant':24s} {'step (s)':>9s} {'vs dense':>9s} {'held (MB)':>10s} "
          f"{'step peak (MB)':>15s}")
    for v in VARIANTS:
        print(f"{v:24s} {med[v]:9.3f} {med[v] / med['dense']:9.3f} {held[v] / 2**20:10.1f} "
              f"{peak[v] / 2**20:15.1f}")


if __name__ == "__main__":
    main()
