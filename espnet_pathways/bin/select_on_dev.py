"""Print the candidate run with the lowest dev loss (``espnet_pathways.dev_selection``).

Usage::

    python -m espnet_pathways.bin.select_on_dev [--epoch last|best] \\
        [--table exp/lsp_prune_every_en.tsv] exp/asr_lsp_imp_en_every20 exp/asr_lsp_imp_en_every40

Prints the chosen exp dir on stdout; ``--table`` also writes ``exp_dir<TAB>dev loss`` for
every candidate (atomically), the record of the choice.  A candidate that was not
trained, or whose checkpoint is damaged, is one error line naming it, exit status 1.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_pathways.bin._cli import run, setup_logging
from espnet_pathways.dev_selection import select_on_dev
from espnet_pathways.fileio import atomic_write_text


def main(cmd: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("exp_dirs", nargs="+", type=Path)
    p.add_argument("--epoch", default="last", choices=["last", "best"],
                   help="last: a pruning run at its final masks; best: the decoded epoch")
    p.add_argument("--table", type=Path, default=None)
    args = p.parse_args(cmd)
    setup_logging(logging.INFO)
    best, losses = select_on_dev(args.exp_dirs, args.epoch)
    for d, loss in losses:
        logging.info("dev loss %.4f  %s%s", loss, d, "  <- chosen" if d == best else "")
    if args.table is not None:
        atomic_write_text(args.table, "".join(f"{d}\t{loss:.6f}\n" for d, loss in losses))
    print(best)


if __name__ == "__main__":
    run(main)
