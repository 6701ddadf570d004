"""Figures for a pathways run (mask overlap, per-layer sparsity, WER per system/language).

Usage::

    python -m espnet_pathways.bin.make_plots --out_dir exp/plots \\
        [--masks exp/masks/lsp_imp.pth [--masks exp/masks/lsp_lth.pth ...]] \\
        [--results_dir exp --systems "dense lap pathways_imp" --decode_dir decode_streaming \\
         --langs en,fr,it,nl [--test_set test] [--metric WER|CER|both]] \\
        [--mask_drift exp/asr_pathways_dynamic/mask_drift.json]

The figures and ``<out_dir>/index.md`` are :mod:`espnet_pathways.reporting.plots`'s.  A
missing or damaged mask file or score file is one error line naming it, exit status 1.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet_pathways.bin._cli import add_reporting_arguments, log_input_errors, parse_reporting_args
from espnet_pathways.reporting.plots import make_plots

logger = logging.getLogger("espnet_pathways.bin.make_plots")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", type=Path, default=Path("exp/plots"))
    p.add_argument("--masks", type=Path, action="append", default=[],
                   help="a PathwayMasks file (repeatable)")
    p.add_argument("--results_dir", type=Path, default=None, help="the exp dir holding asr_<sys>/")
    p.add_argument("--systems", default="", help='systems, e.g. "dense lap pathways_imp"')
    p.add_argument("--decode_dir", default="decode_streaming")
    p.add_argument("--langs", default="", help="comma- or space-separated language codes")
    p.add_argument("--test_set", default="test")
    p.add_argument("--metric", default="WER", choices=["WER", "CER", "both"])
    p.add_argument("--mask_drift", type=Path, default=None,
                   help="mask_drift.json of dynamic pathway training (start/end IoU per pair)")
    add_reporting_arguments(p)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = get_parser()
    args = parse_reporting_args(parser, argv)
    if not args.masks and args.results_dir is None and args.mask_drift is None:
        parser.error("nothing to plot: give --masks and/or --results_dir")
    with log_input_errors(logger, f"plots in {args.out_dir} not made", args.verbose) as outcome:
        written = make_plots(
            args.out_dir, args.masks, args.results_dir,
            systems=args.systems.replace(",", " ").split(),
            langs=args.langs.replace(",", " ").split(),
            decode_dir=args.decode_dir, test_set=args.test_set,
            metrics=["WER", "CER"] if args.metric == "both" else [args.metric],
            mask_drift=args.mask_drift,
        )
    if outcome.failed:
        return 1
    logger.info("wrote %d figure(s) and %s", len(written) - 1, written[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
