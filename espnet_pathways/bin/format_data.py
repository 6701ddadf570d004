#!/usr/bin/env python3
"""Check a Kaldi data dir and write its formatted copy for training/decoding.

    python -m espnet_pathways.bin.format_data --languages en fr it nl \
        --src data/train --dst dump/raw/train [--split_languages true]

See :mod:`espnet_pathways.datadir` for what is checked and written, and what happens to
bad utterances.  With ``--split_languages true`` also writes ``<dst>_<lang>`` per language
(e.g. the per-language test sets).
"""
import argparse
import logging
from typing import List, Optional

from espnet2.utils.types import str2bool

from espnet_pathways.bin._cli import run, setup_logging
from espnet_pathways.datadir import DataDir, check_datadir, languages_in, write_datadir
from espnet_pathways.fileio import exclusive_lock


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--languages", nargs="+", required=True)
    p.add_argument("--src", required=True, help="Kaldi data directory")
    p.add_argument("--dst", required=True, help="Formatted output directory")
    p.add_argument("--fs", type=int, default=16000, help="Expected sampling rate")
    p.add_argument("--split_languages", type=str2bool, default=False)
    p.add_argument("--max_bad_fraction", type=float, default=0.05,
                   help="Stop if more than this fraction of a language is unusable")
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    src = DataDir.read(args.src)
    utts, num_samples = check_datadir(src, args.languages, args.fs, args.max_bad_fraction)
    # Held while writing <dst> and its <dst>_<lang> copies: two runs never mix their files.
    with exclusive_lock(args.dst, "this formatted data dir"):
        write_datadir(src, utts, num_samples, args.languages, args.dst)
        logging.info("%s -> %s: %d utterances kept, %d skipped", args.src, args.dst,
                     len(utts), len(src.bad))
        if args.split_languages:
            for lang in languages_in(src, utts):
                sub = [u for u in utts if src.utt2lang[u] == lang]
                out = write_datadir(src, sub, num_samples, args.languages,
                                    f"{args.dst}_{lang}")
                logging.info("  %s: %d utterances -> %s", lang, len(sub), out)


if __name__ == "__main__":
    run(main)
