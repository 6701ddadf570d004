#!/usr/bin/env python3
"""Dense training-step time against the joint network's size, on the corpus's batches.

The joint network runs on every (frame, label) pair of a batch: its (B, T, U+1, J)
activations and the (B, T, U+1, V) logits the RNN-T loss reads grow with the utterances'
length squared, while the encoder grows linearly.  On the embedded corpus's real batches
the joint network and the loss were about a third of a dense step at J = 160, which is
why `conf/train_dense.yaml` uses a smaller joint space (conf/tuning/dense_tuning.md,
round 7).  This prints the step time (forward, backward, Adam) of the dense model of
``--config`` for each ``--sizes`` joint space, all on the same batches, interleaved,
and the ratio to the first size, measured in this run.

Batches: ESPnet's own ``numel`` batch sampler over stage 4's shape files
(``--stats_dir exp/asr_stats_<...>``, the lengths of the corpus a run built), with random
audio and labels of those lengths; without ``--stats_dir``, lengths drawn like the
embedded corpus's (about 2.8 s per utterance, 14 characters a second).

    python benchmarks/bench_joint_size.py [--stats_dir exp/asr_stats_shared80] \
        [--sizes 160 64] [--batches 24 --repeats 3 --threads 2]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pathway_step import build, run_once  # noqa: E402  (the benchmarks' shared helpers)

ROOT = Path(__file__).resolve().parents[1]


def synthetic_shapes(out: Path, seed: int) -> Path:
    """Shape files (ESPnet's ``speech_shape``/``text_shape.bpe``) of lengths drawn like the
    embedded corpus's, so that both kinds of lengths go through ESPnet's own sampler."""
    g = torch.Generator().manual_seed(seed)
    seconds = torch.empty(4000).log_normal_(0.9, 0.45, generator=g).clamp(0.8, 12.0)
    train = out / "train"
    train.mkdir(parents=True)
    keys = [f"utt{i:04d}" for i in range(len(seconds))]
    (train / "speech_shape").write_text(
        "".join(f"{k} {int(s * 16000)}\n" for k, s in zip(keys, seconds.tolist())))
    (train / "text_shape.bpe").write_text(
        "".join(f"{k} {max(1, int(s * 14))},80\n" for k, s in zip(keys, seconds.tolist())))
    return out


def corpus_lengths(stats_dir: Path, batch_bins: int, n: int):
    """``n`` of ESPnet's ``numel`` batches as lists of (samples, labels), spread over the
    length range."""
    from espnet2.fileio.read_text import read_2columns_text
    from espnet2.samplers.build_batch_sampler import build_batch_sampler

    train = stats_dir / "train"
    sampler = build_batch_sampler(
        "numel", batch_size=1, batch_bins=batch_bins,
        shape_files=[str(train / "speech_shape"), str(train / "text_shape.bpe")])
    speech = read_2columns_text(train / "speech_shape")
    text = read_2columns_text(train / "text_shape.bpe")
    batches = [[(int(speech[u].split(",")[0]), int(text[u].split(",")[0])) for u in keys]
               for keys in sampler]
    step = max(1, len(batches) // n)
    return batches[::step][:n]


def make_batch(items, vocab: int, g: torch.Generator) -> dict:
    samples = torch.tensor([s for s, _ in items])
    labels = torch.tensor([u for _, u in items])
    b = len(items)
    return dict(
        speech=torch.randn(b, int(samples.max()), generator=g) * 0.1, speech_lengths=samples,
        text=torch.randint(2, vocab - 1, (b, int(labels.max())), generator=g),
        text_lengths=labels, lang=(torch.arange(b) % 4).view(-1, 1),
        lang_lengths=torch.ones(b, dtype=torch.long))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, default=ROOT / "conf" / "train_dense.yaml")
    p.add_argument("--stats_dir", type=Path, default=None)
    p.add_argument("--sizes", type=int, nargs="+", default=[160, 64])
    p.add_argument("--vocab", type=int, default=50)
    p.add_argument("--batches", type=int, default=24)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(args.config.read_text())
    models = {}
    with tempfile.TemporaryDirectory() as tmp:
        stats_dir = args.stats_dir or synthetic_shapes(Path(tmp) / "shapes", seed=0)
        lengths = corpus_lengths(stats_dir, int(config.get("batch_bins", 500000)),
                                 args.batches)
        for size in args.sizes:
            cfg = copy.deepcopy(config)
            cfg.setdefault("joint_network_conf", {})["joint_space_size"] = size
            path = Path(tmp) / f"j{size}.yaml"
            path.write_text(yaml.safe_dump(cfg))
            model = build(path, args.vocab)
            model.train()
            models[size] = (model, torch.optim.Adam(model.parameters(), lr=1e-3))

    g = torch.Generator().manual_seed(0)
    batches = [make_batch(items, args.vocab, g) for items in lengths]
    for model, opt in models.values():  # warm-up
        run_once(model, opt, batches[:1])
    means = {size: [] for size in args.sizes}
    for _ in range(args.repeats):
        for size, (model, opt) in models.items():
            means[size].append(run_once(model, opt, batches))
    n_utts = sum(len(items) for items in lengths)
    print(f"torch {torch.__version__}, {args.threads} threads, {len(batches)} batches "
          f"({n_utts} utterances, {'stage 4 shapes' if args.stats_dir else 'synthetic lengths'}),"
          f" median of {args.repeats} passes")
    print(f"{'joint_space_size':>16s} {'parameters':>11s} {'s per step':>11s} {'vs first':>9s}")
    first = statistics.median(means[args.sizes[0]])
    for size, (model, _) in models.items():
        t = statistics.median(means[size])
        params = sum(q.numel() for q in model.parameters())
        print(f"{size:16d} {params:11d} {t:11.3f} {t / first:9.2f}")


if __name__ == "__main__":
    main()
