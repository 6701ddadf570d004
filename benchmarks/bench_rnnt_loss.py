#!/usr/bin/env python3
"""RNN-T loss time (forward + backward): torchaudio's kernel vs our PyTorch recursion.

Lattice sizes of the default recipe (characters, stride 4, vocabulary 80): a batch of a
few long utterances, a typical batch and a batch of many short ones.  Both implementations
run on the same logits; the ratio is measured in this run (median of ``--repeats``).

    python benchmarks/bench_rnnt_loss.py [--threads 2 --repeats 5]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from espnet_pathways.rnnt_loss import rnnt_loss

SHAPES = [(4, 200, 110), (11, 68, 41), (30, 25, 15)]  # (batch, frames, labels)


def time_loss(impl: str, logits, targets, t_len, u_len, repeats: int) -> float:
    times = []
    for _ in range(repeats + 1):  # the first run warms up
        x = logits.clone().requires_grad_(True)
        t = time.perf_counter()
        rnnt_loss(x, targets, t_len, u_len, implementation=impl).backward()
        times.append(time.perf_counter() - t)
    return statistics.median(times[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=80)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, vocab {args.vocab}, "
          f"median of {args.repeats} (forward + backward)")
    print(f"{'B x T x U':>14s} {'torchaudio (s)':>15s} {'pytorch (s)':>12s} {'speed-up':>9s}")
    for b, t, u in SHAPES:
        logits = torch.randn(b, t, u + 1, args.vocab, generator=g)
        targets = torch.randint(1, args.vocab, (b, u), generator=g, dtype=torch.int32)
        t_len = torch.full((b,), t, dtype=torch.int32)
        u_len = torch.full((b,), u, dtype=torch.int32)
        ta = time_loss("torchaudio", logits, targets, t_len, u_len, args.repeats)
        pt = time_loss("pytorch", logits, targets, t_len, u_len, args.repeats)
        print(f"{f'{b} x {t} x {u}':>14s} {ta:15.4f} {pt:12.4f} {ta / pt:9.2f}")


if __name__ == "__main__":
    main()
