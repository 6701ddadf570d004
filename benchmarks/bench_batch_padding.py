#!/usr/bin/env python3
"""Padding of the training batches: how much of a batch's audio is zeros.

A batch is padded to its longest utterance, so its cost is about batch size x longest
length; ``padded / audio`` (sum over the batches of that product, over the sum of the
true lengths) says how much of the compute is spent on padding.  Printed for the three
samplers a run of this recipe meets, on the same shape file and ``batch_bins``:

* ESPnet's numel sampler (the dense model's batches: the corpus sorted by length);
* ESPnet's ``CategoryPowerSampler`` (P(l) ~ (n_l/N)^beta, utterances packed in random
  order, languages mixed);
* ``LanguageHomogeneousSampler`` (the pathway stage, dense_ft, pathways_random: one
  language per batch, each language's utterances sorted by length before packing).

    python benchmarks/bench_batch_padding.py \
        --shape_file exp/asr_stats_shared80/train/speech_shape \
        --category2utt dump/raw/train/category2utt --batch_bins 500000 --power 0.5

Measured (session 6, the embedded corpus: 7875 training utterances, batch_bins 500000,
beta 0.5): numel 1.00, CategoryPowerSampler 1.92, LanguageHomogeneousSampler 1.01.  Before
it sorted by length, LanguageHomogeneousSampler packed in random order as
CategoryPowerSampler does, and a dense_ft step took 1.2 s against 0.57 s after the change
(two 1-thread trainings side by side, conf/train_pathways.yaml).
"""
from __future__ import annotations

import argparse
from typing import Dict, Iterable, Sequence

from espnet2.fileio.read_text import load_num_sequence_text
from espnet2.samplers.build_batch_sampler import build_batch_sampler
from espnet2.samplers.category_power_sampler import CategoryPowerSampler

from espnet_pathways.samplers import LanguageHomogeneousSampler


def padding_ratio(batches: Iterable[Sequence[str]], sizes: Dict[str, int]) -> float:
    """Sum of (batch size x longest utterance) over the sum of the utterances' sizes."""
    padded = audio = 0
    for b in batches:
        lengths = [sizes[u] for u in b]
        padded += len(lengths) * max(lengths)
        audio += sum(lengths)
    return padded / audio


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape_file", required=True, help="ESPnet speech_shape of the training set")
    p.add_argument("--category2utt", required=True, help="language -> utterances (dump/raw/<set>)")
    p.add_argument("--batch_bins", type=int, default=500000)
    p.add_argument("--power", type=float, default=0.5, help="beta of P(l) ~ (n_l/N)^beta")
    args = p.parse_args(argv)

    sizes = {k: v[0] for k, v in
             load_num_sequence_text(args.shape_file, loader_type="csv_int").items()}
    samplers = {
        "numel (ESPnet; the dense model)": build_batch_sampler(
            type="numel", batch_size=1, batch_bins=args.batch_bins, shape_files=[args.shape_file],
            sort_in_batch="descending", sort_batch="ascending"),
        "CategoryPowerSampler (ESPnet; random order)": CategoryPowerSampler(
            batch_bins=args.batch_bins, shape_files=[args.shape_file],
            upsampling_factor=args.power, dataset_scaling_factor=1.0,
            category2utt_file=args.category2utt),
        "LanguageHomogeneousSampler (pathway stage)": LanguageHomogeneousSampler(
            batch_bins=args.batch_bins, shape_files=[args.shape_file],
            category2utt_file=args.category2utt, power=args.power),
    }
    print(f"{'sampler':46s} {'batches':>8s} {'utts/batch':>10s} {'padded/audio':>13s}")
    for name, sampler in samplers.items():
        batches = list(sampler)
        n_utts = sum(len(b) for b in batches)
        print(f"{name:46s} {len(batches):8d} {n_utts / len(batches):10.1f} "
              f"{padding_ratio(batches, sizes):13.2f}")


if __name__ == "__main__":
    main()
