#!/usr/bin/env python3
"""Store a dense model (or an exported pathway) in dynamic int8, ready to pack and ship.

    python -m espnet_pathways.bin.quantize_model \
        --asr_train_config exp/asr_dense/config.yaml \
        --asr_model_file exp/asr_dense/latest.pth \
        --out exp/asr_dense/model.int8.pth --quantize_modules Linear LSTM

The int8 file (:mod:`espnet_pathways.quantize`) is the ``asr_model_file`` of
``PathwaySpeech2Text``/``recognize``/``asr_pathways_pack``.  A pathway model is quantized
per language instead: ``export_pathway --lang <l> --quantize_asr_model true``.
"""
import argparse
from typing import Any, Dict, List, Optional

from espnet_pathways.bin._cli import run, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--out", required=True, help="The int8 file to write")
    p.add_argument("--quantize_modules", nargs="*", default=None,
                   help="torch.nn modules to quantize: Linear (default, as ESPnet), LSTM")
    p.add_argument("--log_level", type=lambda x: x.upper(), default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> Dict[str, Any]:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    from espnet_pathways.quantize import quantize_model_file

    return quantize_model_file(args.asr_train_config, args.asr_model_file, args.out,
                               args.quantize_modules)


if __name__ == "__main__":
    run(main)
