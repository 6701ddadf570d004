#!/usr/bin/env python3
"""Training-step time and peak memory of the pathway model vs the dense model.

Same architecture (conf/train_dense.yaml), same batches, same optimizer (Adam):

* dense               -- the dense transducer;
* pathways-homogeneous -- 70% sparse per-language masks, one language per batch
                          (the recipe's default for pathway training);
* pathways-mixed      -- the same masks, batches mixing all languages (split by the
                          model into one masked pass per language).

Pathway variants include the masked optimizer update (the trainer's step hooks).  Step
times are the median of ``--repeats`` interleaved runs over the same batches; peak
memory (max RSS) is measured in a fresh process per variant.

    python benchmarks/bench_pathway_step.py [--batch 32 --seconds 2.7 --repeats 5]
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
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


def setup(variant: str, args):
    from espnet_pathways.masks import PathwayMasks, prunable_parameter_names
    from espnet_pathways.pruning import random_masks
    from espnet_pathways.trainer import PathwayController

    model = build(args.config, args.vocab)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    controller = None
    if variant != "dense":
        names = prunable_parameter_names(model)
        shapes = {n: p.shape for n, p in model.named_parameters() if n in names}
        model.set_pathway_masks(PathwayMasks(
            {lang: random_masks(shapes, 0.7, "global", seed=i) for i, lang in enumerate(LANGS)}))
        opts = SimpleNamespace(output_dir=tempfile.mkdtemp(), resume=False, pruning="none",
                               pruning_languages=[], pruning_shared=False,
                               pruning_target_sparsity=0.7, pruning_fraction=0.2,
                               pruning_every=1, pruning_start=0, pruning_scope="global",
                               pruning_exclude=[], lth_rewind_step=0, mask_updates=True)
        controller = PathwayController(model, [opt], opts)
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


def memory_child(variant: str, args) -> None:
    model, opt, data, _ = setup(variant, args)
    for b in data:
        step(model, opt, b)
    print(json.dumps({"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


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
    p.add_argument("--memory_child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, args)
        return

    setups = {v: setup(v, args) for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        run_once(*setups[v][:3])
    times = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):  # interleaved, so drifts hit every variant alike
        for v in VARIANTS:
            times[v].append(run_once(*setups[v][:3]))
    med = {v: statistics.median(t) for v, t in times.items()}
    mem = {}
    for v in VARIANTS:
        cmd = [sys.executable, __file__, "--memory_child", v, "--config", str(args.config),
               "--vocab", str(args.vocab), "--batch", str(args.batch), "--seconds",
               str(args.seconds), "--n_batches", "2", "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        mem[v] = json.loads(out.strip().splitlines()[-1])["max_rss_mb"]
    print(f"batch {args.batch} x {args.seconds}s, {args.n_batches} batches, median of "
          f"{args.repeats}, {args.threads} threads, torch {torch.__version__}")
    print(f"{'variant':24s} {'step (s)':>9s} {'vs dense':>9s} {'peak RSS (MB)':>14s}")
    for v in VARIANTS:
        print(f"{v:24s} {med[v]:9.3f} {med[v] / med['dense']:9.3f} {mem[v]:14.0f}")


if __name__ == "__main__":
    main()
