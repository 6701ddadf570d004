"""Check that stage configs describe the dense model's architecture.

Usage::

    python -m espnet_pathways.bin.check_configs --dense conf/train_dense.yaml \\
        conf/prune_lsp.yaml conf/prune_lap.yaml conf/train_pathways.yaml

Every training after stage 5 starts from the dense model (``--init_param``), so the
configs of those stages must build the same model (the keys compared, and those that may
differ, are listed in :mod:`espnet_pathways.config_check`).  All match: one info line,
exit status 0.  Otherwise one line per config at fault, naming the file, its first
differing key and both values (or why the file cannot be read), exit status 1.
``pathways.sh`` runs it before any training, on the configs the selected stages use.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional, Sequence

from espnet_pathways.bin._cli import program_name, run, setup_logging
from espnet_pathways.config_check import architecture_differences, load_config


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dense", required=True, help="the dense model's training config")
    p.add_argument("configs", nargs="+",
                   help="configs of stages that start from the dense model")
    p.add_argument("--log_level", default="INFO",
                   choices=("ERROR", "WARNING", "INFO", "DEBUG"), help="logging level")
    return p


def config_errors(dense_path: str, paths: Sequence[str]) -> List[str]:
    """One message per config of ``paths`` that cannot be read or differs from the dense
    config in its architecture (its first difference); empty when all match.  A dense
    config that cannot be read raises ``ValueError``."""
    dense = load_config(dense_path)
    errors: List[str] = []
    for path in dict.fromkeys(paths):  # each file once, in the given order
        try:
            differences = architecture_differences(load_config(path), dense)
        except ValueError as e:
            errors.append(str(e))
            continue
        if differences:
            errors.append(differences[0].describe(path, dense_path))
    return errors


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    errors = config_errors(args.dense, args.configs)
    if errors:
        prog = program_name(main)
        for line in errors:
            print(f"{prog}: error: {line}", file=sys.stderr)
        sys.exit(1)
    logging.info("architecture of %s matches the dense config %s",
                 ", ".join(dict.fromkeys(args.configs)), args.dense)


if __name__ == "__main__":
    run(main)
