#!/usr/bin/env python3
"""Make, combine and inspect pathway mask files.

    # one mask set from the per-language pruning runs (LSP masks -> pathways)
    python -m espnet_pathways.bin.pathway_masks combine --out exp/masks/lsp_imp.pth \
        en=exp/asr_lsp_imp_en/masks.pth fr=exp/asr_lsp_imp_fr/masks.pth ...
    # random masks with the same languages, parameters and sparsities as a mask set
    python -m espnet_pathways.bin.pathway_masks random --like exp/masks/lsp_imp.pth \
        --seed 0 --out exp/masks/random.pth
    # sparsity and overlap tables (and a JSON for RESULTS.md)
    python -m espnet_pathways.bin.pathway_masks inspect exp/masks/lsp_imp.pth \
        --overlap_json exp/masks/overlap.json
    # parameters kept by a system, for RESULTS.md
    python -m espnet_pathways.bin.pathway_masks info --masks exp/masks/lsp_imp.pth \
        --model_file exp/asr_pathways_imp/latest.pth --out exp/asr_pathways_imp/system_info.json
"""
from __future__ import annotations

import argparse
import json
import logging
from typing import List, Optional

from espnet_pathways.bin._cli import run, setup_logging
from espnet_pathways.checkpoint import load_state_dict
from espnet_pathways.fileio import atomic_output, atomic_write_text
from espnet_pathways.masks import PathwayMasks
from espnet_pathways.pruning import random_masks


def cmd_combine(args: argparse.Namespace) -> None:
    masks, sources = {}, {}
    meta = {}
    for spec in args.inputs:
        lang, _, path = spec.partition("=")
        if not path or not lang:
            raise ValueError(f"expected LANG=FILE, got {spec!r}")
        if lang in masks:
            raise ValueError(f"language {lang!r} given twice ({spec!r})")
        pm = PathwayMasks.load(path)
        if lang not in pm:
            raise ValueError(f"{path}: has no mask for language {lang!r} (it has: "
                             f"{' '.join(pm.languages)})")
        masks[lang] = {n: m.clone() for n, m in pm.for_language(lang).items()}
        sources[lang] = {"file": path, "sparsity": pm.sparsity(lang), "meta": pm.meta}
        meta.setdefault("method", pm.meta.get("method"))
    out = PathwayMasks(masks, {"method": f"combined-{meta.get('method')}", "sources": sources})
    save_masks(out, args.out)
    logging.info("wrote %s\n%s", args.out, out.summary_table())


def cmd_random(args: argparse.Namespace) -> None:
    like = PathwayMasks.load(args.like)
    scope = args.scope or like.meta.get("scope") or "global"
    masks = {}
    for i, lang in enumerate(like.languages):
        sparsity = args.sparsity if args.sparsity is not None else like.sparsity(lang)
        masks[lang] = random_masks(like.shapes, sparsity, scope, seed=args.seed + i)
    out = PathwayMasks(masks, {"method": "random", "scope": scope, "seed": args.seed,
                               "like": str(args.like), "target_sparsity": args.sparsity})
    save_masks(out, args.out)
    logging.info("wrote %s\n%s", args.out, out.summary_table())


def save_masks(masks: PathwayMasks, out: str) -> None:
    """Save through a temporary name: an earlier mask file survives a failed run."""
    with atomic_output(out, suffix=".pth") as tmp:
        masks.save(tmp)


def overlap_json(pm: PathwayMasks) -> dict:
    langs = pm.languages
    return {
        "languages": langs,
        "sparsity": {lang: pm.sparsity(lang) for lang in langs},
        "union_sparsity": pm.union_sparsity(),
        "overlap": {a: {b: pm.overlap(a, b) for b in langs} for a in langs},
        "iou": {a: {b: pm.iou(a, b) for b in langs} for a in langs},
    }


def cmd_inspect(args: argparse.Namespace) -> None:
    pm = PathwayMasks.load(args.masks)
    print(f"# {args.masks}: method={pm.meta.get('method')}")
    print(pm.summary_table())
    info = overlap_json(pm)
    if args.layers:
        for lang in pm.languages:
            print(f"\nPer-layer sparsity ({lang}):")
            for name, s in pm.layer_sparsity(lang).items():
                print(f"  {s:6.3f}  {name}")
    if args.overlap_json:
        atomic_write_text(args.overlap_json, json.dumps(info, indent=2))


def cmd_info(args: argparse.Namespace) -> None:
    """Parameters a system keeps: every non-masked parameter plus the masked ones kept.

    ``params_total`` counts every tensor of the state dict (the weights and the model's
    few buffers), ESPnet's auxiliary CTC head included: it is trained and pruned with the
    rest, so leaving it out of the total while its pruned weights are subtracted would
    understate what is kept.
    """
    state = load_state_dict(args.model_file)
    total = sum(t.numel() for t in state.values())
    info = {"params_total": total, "params_kept": total}
    if args.masks:
        pm = PathwayMasks.load(args.masks)
        pm.check_compatible(state)  # names the mask file and the parameter
        union = pm.union()
        pruned = sum(int((~m).sum()) for m in union.values())
        info.update(
            params_kept=total - pruned,
            sparsity={lang: pm.sparsity(lang) for lang in pm.languages},
            union_sparsity=pm.union_sparsity(),
            params_per_pathway={lang: total - sum(int((~m).sum()) for m in pm.for_language(lang).values())
                                for lang in pm.languages},
        )
    atomic_write_text(args.out, json.dumps(info, indent=2))
    logging.info("wrote %s: %s", args.out, info)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log_level", default="INFO")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("combine", help="one mask set from per-language mask files")
    c.add_argument("--out", required=True)
    c.add_argument("inputs", nargs="+", metavar="LANG=FILE")
    c.set_defaults(func=cmd_combine)
    r = sub.add_parser("random", help="random masks shaped like a mask set")
    r.add_argument("--like", required=True)
    r.add_argument("--sparsity", type=float, default=None,
                   help="default: each language's sparsity in --like")
    r.add_argument("--scope", choices=["global", "per_tensor"], default=None)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--out", required=True)
    r.set_defaults(func=cmd_random)
    i = sub.add_parser("inspect", help="sparsity and overlap tables")
    i.add_argument("masks")
    i.add_argument("--layers", action="store_true", help="per-layer sparsity too")
    i.add_argument("--overlap_json", default=None)
    i.set_defaults(func=cmd_inspect)
    f = sub.add_parser("info", help="system_info.json for RESULTS.md")
    f.add_argument("--model_file", required=True)
    f.add_argument("--masks", default=None)
    f.add_argument("--out", required=True)
    f.set_defaults(func=cmd_info)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    args.func(args)


if __name__ == "__main__":
    run(main)
