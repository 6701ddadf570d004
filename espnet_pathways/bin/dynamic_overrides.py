"""Print a Dynamic ASR Pathways override file as command-line options, one per line.

``conf/train_pathways_dynamic.yaml`` holds only what differs from the fixed pathway config
(``--pruning dynamic`` and its ``--pruning_*`` / ``--dynamic_*`` options), so that the
dynamic run trains exactly the fixed run's model, steps and language sampling; stage 10 of
``pathways.sh`` passes these lines after ``--config <fixed pathway config>``::

    python -m espnet_pathways.bin.dynamic_overrides conf/train_pathways_dynamic.yaml
    --pruning
    dynamic
    ...

A missing, empty or garbled file, a key that is not such an option, or ``pruning`` other
than ``dynamic``, is an error naming the file and the key (one line, exit status 1).
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from espnet_pathways.bin._cli import run
from espnet_pathways.fileio import read_yaml_mapping


def override_args(path: Path) -> List[str]:
    """``["--key", "value", ...]`` for the override file ``path`` (checked)."""
    cfg = read_yaml_mapping(path, "dynamic pathways override file")
    if cfg.get("pruning") != "dynamic":
        raise ValueError(f"{path}: needs 'pruning: dynamic', got {cfg.get('pruning')!r}")
    out: List[str] = []
    for key, value in cfg.items():
        if not (isinstance(key, str)
                and (key == "pruning" or key.startswith(("pruning_", "dynamic_")))):
            raise ValueError(f"{path}: {key!r} is not a --pruning_* / --dynamic_* option; "
                             "other options belong in the fixed pathway config")
        if isinstance(value, (dict, list)) or value is None:
            raise ValueError(f"{path}: {key!r} needs a single value, got {value!r}")
        text = str(value).lower() if isinstance(value, bool) else str(value)
        out += [f"--{key}", text]
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path, help="the override YAML file")
    args = parser.parse_args(argv)
    print("\n".join(override_args(args.config)))
    return 0


if __name__ == "__main__":
    run(main)
