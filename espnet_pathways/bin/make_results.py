"""Write ``RESULTS.md`` from experiment directories (never edit it by hand).

Usage::

    python -m espnet_pathways.bin.make_results --out RESULTS.md \\
        --system dense=exp/asr_dense --system pathways=exp/asr_pathways \\
        --decode_dir decode_streaming --langs en,fr,it,nl \\
        [--reference_system dense] [--data_summary data/local/corpus_summary.tsv] \\
        [--config dense=conf/train_dense.yaml ...] [--overlap_json exp/masks/overlap.json] \\
        [--masks lsp_imp=exp/masks/lsp_imp.pth] \\
        [--mask_drift exp/asr_pathways_dynamic/mask_drift.json] [--low_resource_langs it,nl] \\
        [--title "..."] [--precision 1]

Besides the error-rate tables it writes the training-compute table (each system's
``compute_sources``), the "paper claims" table with paired significance tests, and the
masks' overlap per layer group (docs/results.md says how to read them).

What it reads and writes is :mod:`espnet_pathways.reporting.results`.  A malformed input is
one error line naming the system, language and file, exit status 1, and the earlier
``--out`` file is left as it was; the new one is moved into place only when complete.
The sections of added languages (``add_language:<code>`` blocks, written by stage 21's
``add_language_results``) in the earlier ``--out`` file are kept at its end.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_pathways.bin._cli import add_reporting_arguments, log_input_errors, parse_reporting_args
from espnet_pathways.fileio import atomic_write_text
from espnet_pathways.reporting.results import build_markdown, carry_add_language_sections, parse_name_value

logger = logging.getLogger("espnet_pathways.bin.make_results")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Write RESULTS.md from score.json files of experiment directories.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", required=True, help="markdown file to (re)write atomically")
    p.add_argument("--system", action="append", required=True, metavar="NAME=EXP_DIR",
                   type=lambda s: parse_name_value(s, "--system"),
                   help="a system row; repeat, order is kept")
    p.add_argument("--decode_dir", default="decode_streaming",
                   help="subdir of EXP_DIR holding test_<lang>/score_{wer,cer}")
    p.add_argument("--decoding_note", default="",
                   help="how the systems were decoded, after the decode dir (e.g. the LM fused)")
    p.add_argument("--langs", default="en,fr,it,nl", help="comma-separated languages")
    p.add_argument("--reference_system", default=None,
                   help="system name for the relative average-WER column")
    p.add_argument("--extra_reference", action="append", default=[], metavar="NAME",
                   help="another system for a relative average-WER column (e.g. dense_ft); "
                   "repeatable")
    p.add_argument("--data_summary", default=None, help="corpus summary TSV to embed")
    p.add_argument("--voice_data", default=None, metavar="DATA_DIR",
                   help="the test set's Kaldi data dir with spk2voice: adds the test CER "
                   "per kind of voice (espeak-ng, flite/festival, recorded)")
    p.add_argument("--config", action="append", default=[], metavar="NAME=YAML",
                   type=lambda s: parse_name_value(s, "--config"),
                   help="training/decoding config to list with hash and hyperparameters")
    p.add_argument("--overlap_json", default=None, help="mask overlap/IoU json")
    p.add_argument("--deploy_table", default=None,
                   help="deployment TSV of benchmarks/bench_deploy.py (recipe stage 16)")
    p.add_argument("--masks", action="append", default=[], metavar="NAME=PTH",
                   type=lambda s: parse_name_value(s, "--masks"),
                   help="a mask file whose overlap/IoU per layer group is tabulated")
    p.add_argument("--mask_drift", default=None,
                   help="mask_drift.json of dynamic pathway training (start/end IoU)")
    p.add_argument("--low_resource_langs", default="it,nl",
                   help="languages of the 'pathways beat LSP' claims")
    p.add_argument("--dev_epoch", choices=("last", "best"), default="last",
                   help="the epoch whose dev loss chooses the claims' pathway system: the "
                        "decoded one (pathways.sh: best for --inference_model "
                        "valid.loss.*, last otherwise)")
    p.add_argument("--no_claims", dest="claims", action="store_false",
                   help="leave out the paper-claims table (and its significance tests)")
    p.add_argument("--bootstrap_resamples", type=int, default=2000,
                   help="paired bootstrap resamples per claim")
    p.add_argument("--bootstrap_seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--title", default="Results", help="document title")
    p.add_argument("--stage_times", default=None, help="exp/stage_times.tsv of the pipeline")
    p.add_argument("--precision", type=int, default=1, help="decimals for rates")
    p.add_argument("--repo", default=".", help="git repository for the commit id")
    add_reporting_arguments(p)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = get_parser()
    args = parse_reporting_args(parser, argv)
    names = [n for n, _ in args.system]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        parser.error(f"duplicate --system names: {dup}")
    for ref in [args.reference_system, *args.extra_reference]:
        if ref is not None and ref not in names:
            parser.error(f"reference system {ref!r} is not one of {names}")
    with log_input_errors(logger, f"{args.out} not written", args.verbose) as outcome:
        text = build_markdown(args)
        out = Path(args.out)
        if out.is_file():  # the added languages' sections (stage 21) stay
            text = carry_add_language_sections(out.read_text(encoding="utf-8"), text)
        atomic_write_text(out, text)
    if outcome.failed:
        return 1
    logger.info("wrote %s (%d systems)", args.out, len(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
