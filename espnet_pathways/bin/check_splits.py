"""Fail if a held-out (dev/test) speaker, voice or sentence is also in training.

Usage::

    python -m espnet_pathways.bin.check_splits --train data/train \\
        --held_out data/dev data/test

Reads ``utt2spk`` and ``text`` of each dir, plus ``utt2lang`` and ``spk2voice`` /
``utt2voice`` when present (see :mod:`espnet_pathways.split_check`).  A leak is one
line naming the speaker/voice/sentence, the utterances and the files, exit status 1.
Stage 1 of ``egs2/TEMPLATE/asr_pathways/pathways.sh`` runs it after ``local/data.sh``.
"""

from __future__ import annotations

import argparse
import logging
from typing import List, Optional

from espnet_pathways.bin._cli import run, setup_logging
from espnet_pathways.split_check import check_splits


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True, help="training data dir")
    p.add_argument("--held_out", required=True, nargs="+", help="dev/test data dirs")
    p.add_argument("--log_level", default="INFO",
                   choices=("ERROR", "WARNING", "INFO", "DEBUG"), help="logging level")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    counts = check_splits(args.train, args.held_out)
    for d, c in counts.items():
        logging.info("%s: %s", d, ", ".join(f"{n} {k}" for k, n in c.items()))
    logging.info("no held-out speaker%s or sentence is in %s",
                 ", voice" if all("voices" in c for c in counts.values()) else "", args.train)


if __name__ == "__main__":
    run(main)
