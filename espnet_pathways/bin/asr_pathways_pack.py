#!/usr/bin/env python3
"""Pack a (pathway) transducer into an ESPnet model zip (``espnet2.bin.pack``'s format).

    python -m espnet_pathways.bin.asr_pathways_pack \
        --asr_train_config exp/asr_pathways_imp/config.yaml \
        --asr_model_file exp/asr_pathways_imp/latest.pth \
        --pathway_masks exp/masks/lsp_imp.pth --compact true \
        --outpath exp/asr_pathways_imp/pathways.zip

Run it from the recipe directory (relative paths in the config are read from there).
With ``--lm_train_config/--lm_file/--decode_config`` (``pathways.sh --use_lm true``) the
zip also carries the fusion LM and the decoding config whose weights it was fused with.
The zip holds ``meta.yaml``, the config (``bpemodel``, ``normalize_conf.stats_file``,
``pathway_masks`` pointing at the packed copies, which the unpacker rewrites), the model
and the masks, plus any ``--option`` file.  ``--compact true`` stores only the weights
inside the union of the pathways plus bit-packed masks (``espnet_pathways.packing``);
load either kind with ``PathwaySpeech2Text.from_pretrained("pathways.zip", lang="it")``
or ``espnet_pathways.packing.unpack_model``.
"""
import argparse
import logging
from typing import List, Optional

from espnet2.utils.types import str2bool

from espnet_pathways.bin._cli import add_model_arguments, run, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, masks_help="Mask file (default: the config's pathway_masks; "
                        "none: dense model)")
    p.add_argument("--compact", type=str2bool, default=False,
                   help="Store only the weights inside the union of the pathways")
    p.add_argument("--outpath", required=True, help="The zip to write")
    p.add_argument("--lm_train_config", default=None,
                   help="A fusion LM's config (espnet2.bin.lm_train), packed as ESPnet packs one")
    p.add_argument("--lm_file", default=None, help="The fusion LM's model file")
    p.add_argument("--decode_config", default=None,
                   help="The decoding config the LM was fused with: from_pretrained and "
                        "recognize take its lm_weight and lm_token_bonus")
    p.add_argument("--option", action="append", default=[], help="Extra file to pack")
    p.add_argument("--root", default=".", help="Directory the config's paths are relative to")
    p.add_argument("--log_level", type=lambda x: x.upper(), default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> dict:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    from espnet_pathways.packing import pack_model

    summary = pack_model(
        asr_train_config=args.asr_train_config, asr_model_file=args.asr_model_file,
        outpath=args.outpath, pathway_masks=args.pathway_masks, compact=args.compact,
        root=args.root, option=tuple(args.option), lm_train_config=args.lm_train_config,
        lm_file=args.lm_file, decode_config=args.decode_config,
    )
    logging.info("wrote %s: %d bytes (%s)", summary["outpath"], summary["size"],
                 "compact" if summary["compact"] else "dense")
    return summary


if __name__ == "__main__":
    run(main)
