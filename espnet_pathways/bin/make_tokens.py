#!/usr/bin/env python3
"""Build the output vocabulary: shared sentencepiece model or merged per-language pieces.

    python -m espnet_pathways.bin.make_tokens --mode shared --vocab_size 256 \
        --text dump/raw/train/text --out_dir data/token_list/bpe_shared256
    python -m espnet_pathways.bin.make_tokens --mode merged --vocab_size 128 \
        --text dump/raw/train/text --utt2lang dump/raw/train/utt2lang \
        --out_dir data/token_list/bpe_merged128 --segment dump/raw/train dump/raw/dev

``--segment DIR...`` (merged mode) writes ``DIR/text.pieces``: each utterance segmented
with its own language's model, which training then reads as ``token_type: word``.
"""
import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_pathways.bin._cli import run, setup_logging
from espnet_pathways import tokens
from espnet_pathways.languages import read_utt2lang


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=["shared", "merged"], default="shared")
    p.add_argument("--vocab_size", type=int, required=True,
                   help="Pieces of the shared model, or of each language's model")
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char"])
    p.add_argument("--text", required=True, help="Training transcripts (Kaldi text)")
    p.add_argument("--utt2lang", help="Needed for --mode merged")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--segment", nargs="*", default=[],
                   help="Data dirs whose text is segmented into text.pieces (merged)")
    p.add_argument("--log_level", default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    text = tokens.read_text(args.text)
    if args.mode == "shared":
        tokens.make_shared(text, args.out_dir, args.vocab_size, args.model_type)
        return
    if not args.utt2lang:
        raise ValueError("--mode merged needs --utt2lang")
    utt2lang = read_utt2lang(args.utt2lang)
    missing = [u for u in text if u not in utt2lang]
    if missing:
        raise KeyError(f"{len(missing)} utterance(s) of {args.text} have no entry in "
                       f"{args.utt2lang}, e.g. {' '.join(missing[:3])}")
    tokens.make_merged(text, utt2lang, args.out_dir, args.vocab_size, args.model_type)
    for d in args.segment:
        d = Path(d)
        seg = tokens.segment_merged(tokens.read_text(d / "text"),
                                    read_utt2lang(d / "utt2lang"), args.out_dir)
        tokens.write_lines((f"{u} {p}" for u, p in sorted(seg.items())), d / "text.pieces")
        logging.info("wrote %s", d / "text.pieces")


if __name__ == "__main__":
    run(main)
