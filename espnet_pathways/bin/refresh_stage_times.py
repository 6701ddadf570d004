"""Rewrite the stage-timing table of a results file from ``exp/stage_times.tsv``.

Usage (pathways.sh calls it after recording the time of a stage that writes a report)::

    python -m espnet_pathways.bin.refresh_stage_times --stage_times exp/stage_times.tsv \\
        --results RESULTS.md
    python -m espnet_pathways.bin.refresh_stage_times --stage_times exp/stage_times.tsv \\
        --results RESULTS.md --results RESULTS_add_cs.md --add_language cs

A report is written inside a stage, before that stage's time is recorded: stage 16's row
(and stage 21's in the add-language report) would be missing, and a rerun of stage 13
alone would show its earlier time.  Without ``--add_language`` the main table (``##
Stage timings``, stages 1-17) is refreshed; with it, the ``### Stage timings`` table of
that language's section (its ``add_language:<code>`` block in RESULTS.md, the whole of
RESULTS_add_<code>.md).  A file without such a table is left as it is (a warning); the
rewrite is atomic.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_pathways.bin._cli import run, setup_logging
from espnet_pathways.fileio import atomic_write_text
from espnet_pathways.reporting.results import (
    ADD_LANGUAGE_MARK,
    ADD_LANGUAGE_STAGES,
    MAIN_STAGES,
    add_language_markers,
    replace_stage_times,
    stage_times_section,
)


def main(cmd: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage_times", type=Path, required=True, help="exp/stage_times.tsv")
    p.add_argument("--results", type=Path, action="append", required=True,
                   help="a results file to update; repeat for several")
    p.add_argument("--add_language", default=None,
                   help="refresh the table of the stages that added this language")
    args = p.parse_args(cmd)
    setup_logging(logging.INFO)
    if args.add_language:
        lang = args.add_language
        table = stage_times_section(args.stage_times, ADD_LANGUAGE_STAGES, f"add {lang}:")
        heading = "### Stage timings"
        block = add_language_markers(lang)
    else:
        table = stage_times_section(args.stage_times, MAIN_STAGES)
        heading, block = "## Stage timings", None
    for path in args.results:
        if not path.is_file():
            logging.warning("%s: no such file; its stage timings not refreshed", path)
            continue
        text = path.read_text(encoding="utf-8")
        if block is not None and ADD_LANGUAGE_MARK in text:  # RESULTS.md: its block only
            new = replace_stage_times(text, table, heading, block)
        else:  # RESULTS_add_<code>.md (no block markers), or the main table
            new = replace_stage_times(text, table, heading)
        if new is None:
            logging.warning("%s: no '%s' table; not refreshed", path, heading)
        elif new != text:
            atomic_write_text(path, new)
            logging.info("%s: stage timings refreshed", path)


if __name__ == "__main__":
    run(main)
