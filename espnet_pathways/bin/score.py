"""Score one decoding directory into an ``asr.sh``-style ``score_{wer,cer}`` dir.

Usage::

    python -m espnet_pathways.bin.score \\
        --ref data/test/text --hyp exp/x/decode/test/text \\
        --out_dir exp/x/decode/test/score_wer --unit word \\
        [--utt2lang data/test/utt2lang --lang it] [--no_sclite]

Why a separate CLI: the per-language test sets of the multilingual recipe can
be scored from one decoding of a pooled test set by restricting references to
one language (``--utt2lang/--lang``); the hypotheses are restricted to the same
utterances so other languages' outputs are not mistaken for stray hypotheses.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Dict, List, Optional

from espnet_pathways.scoring import (
    UNITS,
    read_text,
    read_utt2lang,
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
    p.add_argument("--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def restrict_to_lang(
    ref: Dict[str, str], hyp: Dict[str, str], utt2lang: Dict[str, str], lang: str
) -> "tuple[Dict[str, str], Dict[str, str]]":
    """Keep references of ``lang`` and hypotheses of those same utterances.

    Hypotheses with no reference at all are kept so :func:`score` still
    reports them (they indicate a mismatched data directory).
    """
    unknown: List[str] = [u for u in ref if u not in utt2lang]
    if unknown:
        raise ValueError(
            f"{len(unknown)} reference utterance(s) missing from utt2lang, e.g. {unknown[:5]}"
        )
    keep_ref = {u: t for u, t in ref.items() if utt2lang[u] == lang}
    if not keep_ref:
        langs = sorted(set(utt2lang[u] for u in ref))
        raise ValueError(f"no reference utterances for lang {lang!r}; present: {langs}")
    keep_hyp = {u: t for u, t in hyp.items() if u in keep_ref or u not in ref}
    return keep_ref, keep_hyp


def main(argv: Optional[List[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s: %(message)s"
    )
    if (args.utt2lang is None) != (args.lang is None):
        logger.error("--utt2lang and --lang must be given together")
        return 2
    try:
        ref = read_text(args.ref)
        hyp = read_text(args.hyp)
        if args.lang is not None:
            ref, hyp = restrict_to_lang(ref, hyp, read_utt2lang(args.utt2lang), args.lang)
        result = score(ref, hyp, args.unit)
        write_score_dir(result, args.out_dir, use_sclite=not args.no_sclite)
    except (ValueError, OSError, RuntimeError) as e:
        logger.error("%s", e)
        return 1
    suffix = f" [lang={args.lang}]" if args.lang else ""
    logger.info("%s%s -> %s", result.summary(), suffix, args.out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
