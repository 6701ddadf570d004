"""Score one decoding directory into an ``asr.sh``-style ``score_{wer,cer}`` dir.

Usage::

    python -m espnet_pathways.bin.score \\
        --ref data/test/text --hyp exp/x/decode/test/text \\
        --out_dir exp/x/decode/test/score_wer --unit word \\
        [--utt2lang data/test/utt2lang --lang it] [--no_sclite]

The scoring itself is :mod:`espnet_pathways.reporting.scoring` (sclite's counts, or
kaldialign's without sclite).  Bad input (a missing or malformed file, hypotheses of
utterances the references lack, ...) is one error line naming the file, utterances or
language, exit status 1, and the score directory keeps its previous complete files.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from espnet_pathways.bin._cli import add_reporting_arguments, log_input_errors, parse_reporting_args
from espnet_pathways.fileio import read_two_columns
from espnet_pathways.reporting.scoring import (
    UNITS,
    read_text,
    restrict_to_language,
    score,
    write_score_dir,
)

logger = logging.getLogger("espnet_pathways.bin.score")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Compute WER/CER and write ref.trn, hyp.trn, result.txt, "
        "alignment.txt and score.json into --out_dir.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--ref", required=True, help="Kaldi text file with references")
    p.add_argument("--hyp", required=True, help="Kaldi text file with hypotheses")
    p.add_argument("--out_dir", required=True, help="score directory to (re)write")
    p.add_argument("--unit", choices=UNITS, default="word", help="word -> WER, char -> CER")
    p.add_argument("--utt2lang", default=None, help="uttid -> language map (needs --lang)")
    p.add_argument("--lang", default=None, help="score only utterances of this language")
    p.add_argument("--no_sclite", action="store_true", help="do not run sclite even if found")
    add_reporting_arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parse_reporting_args(parser, argv)
    if (args.utt2lang is None) != (args.lang is None):
        parser.error("--utt2lang and --lang must be given together")
    with log_input_errors(logger, f"scoring {args.hyp} against {args.ref}",
                          args.verbose) as outcome:
        ref = read_text(args.ref)
        hyp = read_text(args.hyp)
        if args.lang is not None:
            ref, hyp = restrict_to_language(ref, hyp, read_two_columns(args.utt2lang), args.lang)
        counts = write_score_dir(score(ref, hyp, args.unit), args.out_dir, use_sclite=not args.no_sclite)
    if outcome.failed:
        return 1
    suffix = f" [lang={args.lang}]" if args.lang else ""
    logger.info("%s%s -> %s", counts.summary(), suffix, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
