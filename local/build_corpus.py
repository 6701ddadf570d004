#!/usr/bin/env python3
"""Build the embedded corpus (default en/fr/it/nl; also cs) as Kaldi-style data dirs.

Run by ``local/data.sh`` (which checks the Debian packages first); directly::

    PYTHONPATH=. python local/build_corpus.py --nj 2 --seed 0 --out_dir data
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import List, Optional

from embedded_corpus.build import CorpusError, Options, build
from espnet_pathways.bin._cli import run
from espnet_pathways.text import SUPPORTED_LANGS


def _optional_int(value: str) -> Optional[int]:
    return None if value.lower() in ("none", "all", "") else int(value)


def _optional_str(value: str) -> Optional[str]:
    return None if value.lower() in ("none", "") else value


def get_parser() -> argparse.ArgumentParser:
    """Argument parser; defaults come from :class:`Options`."""
    d = Options()
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--log_level", default="INFO",
                   choices=("ERROR", "WARNING", "INFO", "DEBUG"), help="logging level")
    p.add_argument("--langs", default=",".join(d.langs),
                   help=f"comma-separated languages, subset of {','.join(SUPPORTED_LANGS)}")
    p.add_argument("--max_lines_per_lang", type=_optional_int, default=None,
                   help="at most this many dialogue lines per language in each split "
                        "('none' = all)")
    p.add_argument("--voices_per_line", type=int, default=d.voices_per_line,
                   help="synthetic speakers per line (en/fr/it)")
    p.add_argument("--extra_train_voices", type=int, default=d.extra_train_voices,
                   help="further synthetic speakers per train line (en/fr/it); dev/test "
                        "keep --voices_per_line")
    p.add_argument("--recorded_tts_fraction", type=float, default=d.recorded_tts_fraction,
                   help="fraction of recorded (nl/cs) train lines also spoken by one "
                        "synthetic train voice")
    p.add_argument("--max_duration", type=float, default=d.max_duration,
                   help="drop utterances longer than this (seconds)")
    p.add_argument("--min_duration", type=float, default=d.min_duration,
                   help="drop utterances shorter than this (seconds)")
    p.add_argument("--seed", type=int, default=d.seed, help="random seed")
    p.add_argument("--nj", type=int, default=d.nj, help="number of parallel jobs")
    p.add_argument("--dev_fraction", type=float, default=d.dev_fraction,
                   help="fraction of the dialogue keys of non-held-out characters in dev")
    p.add_argument("--test_fraction", type=float, default=d.test_fraction,
                   help="fraction of the dialogue keys of non-held-out characters in test")
    p.add_argument("--low_resource_lang", type=_optional_str, default=d.low_resource_lang,
                   help="language whose train lines are subsampled ('none' to disable)")
    p.add_argument("--low_resource_fraction", type=float, default=d.low_resource_fraction,
                   help="fraction of the low-resource language's train lines kept")
    p.add_argument("--audio_dir", default=d.audio_dir, help="where wav files are written")
    p.add_argument("--out_dir", default=d.out_dir, help="where Kaldi data dirs are written")
    p.add_argument("--fillets_root", default=d.fillets_root,
                   help="Fish Fillets NG data directory (Debian fillets-ng-data)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    kwargs = vars(args)
    kwargs.pop("log_level")
    # dict.fromkeys: drop repeated languages, keep order.
    kwargs["langs"] = list(dict.fromkeys(x.strip() for x in kwargs["langs"].split(",") if x.strip()))
    start = time.time()
    try:
        build(Options(**kwargs))
    except CorpusError as e:  # the corpus builder's own faults: one line, exit 1
        logging.error("%s", e)
        sys.exit(1)
    logging.info("corpus built in %.1f s", time.time() - start)


if __name__ == "__main__":
    run(main)
