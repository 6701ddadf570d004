#!/usr/bin/env python3
"""Export one language's pathway as a standalone sparse monolingual ESPnet transducer.

    python -m espnet_pathways.bin.export_pathway \
        --asr_train_config exp/asr_pathways_imp/config.yaml \
        --asr_model_file exp/asr_pathways_imp/latest.pth \
        --pathway_masks exp/masks/lsp_imp.pth --lang it --out_dir exp/export_it

Writes ``<out_dir>/config.yaml`` (the training config with ``pathway_masks: null``,
``languages: [it]`` and without our ``model_conf.rnnt_loss_impl``), ``<out_dir>/model.pth`` whose masked weights are ``W * m_it`` (the
pathway's zeros are real zeros) and ``<out_dir>/export.yaml`` (source, language,
sparsity).  Plain ESPnet decodes it: ``espnet2.bin.asr_transducer_inference.Speech2Text(
asr_train_config=..., asr_model_file=...)`` gives what ``PathwaySpeech2Text`` gives for
``lang="it"`` on the multilingual model (a model trained with ``--normalize causal_mvn``,
:mod:`espnet_pathways.normalize`, needs ``PathwaySpeech2Text``: plain ESPnet has no such
normalisation).  ``--asr_model_file`` may also be a compact file
(``*.compact.pth`` from ``asr_pathways_pack --compact true``), which carries its masks.

``--quantize_asr_model true`` (ESPnet's option name, with ``--quantize_modules``) also
writes ``<out_dir>/model.int8.pth``: the exported pathway dynamically quantized to int8 and
stored sparse (:mod:`espnet_pathways.quantize`), the file to pack and ship for one
language; ``PathwaySpeech2Text``/``recognize`` load it as ``asr_model_file``.
"""
import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet2.utils.types import str2bool

from espnet_pathways.bin._cli import add_model_arguments, run, setup_logging


def export_pathway(
    asr_train_config: str,
    asr_model_file: str,
    lang: str,
    out_dir: str,
    pathway_masks: Optional[str] = None,
    check: bool = True,
    quantize_asr_model: bool = False,
    quantize_modules: Optional[List[str]] = None,
) -> Dict[str, Any]:
    import yaml

    from espnet_pathways.checkpoint import load_state_dict
    from espnet_pathways.fileio import (
        atomic_torch_save,
        atomic_write_text,
        exclusive_lock,
        read_yaml_mapping,
    )
    from espnet_pathways.languages import UnknownLanguageError
    from espnet_pathways.masks import PathwayMasks
    from espnet_pathways.packing import is_compact_file, load_compact

    cfg = read_yaml_mapping(asr_train_config, "training config")
    if is_compact_file(asr_model_file):
        state, masks = load_compact(asr_model_file)
        if pathway_masks:
            masks = PathwayMasks.load(pathway_masks)
    else:
        state = load_state_dict(asr_model_file)  # names a missing or truncated file
        mask_file = pathway_masks or cfg.get("pathway_masks")
        if not mask_file:
            raise ValueError("no pathway masks: give --pathway_masks (the config has none)")
        masks = PathwayMasks.load(mask_file)
    if lang not in masks:
        raise UnknownLanguageError(
            f"unknown language {lang!r}; these masks have pathways for: {' '.join(masks.languages)}"
        )
    masks.check_compatible(state)
    mask = masks.for_language(lang)
    out_state = {}
    for k, v in state.items():
        out_state[k] = v * mask[k].to(v.dtype) if k in mask else v

    # add_language: a grown model's language keeps only its own output vocabulary.
    n_tokens = ((cfg.get("model_conf") or {}).get("output_vocab_sizes") or {}).get(lang)
    if n_tokens is not None and isinstance(cfg.get("token_list"), list):
        from espnet_pathways.add_language import restrict_output

        # clone: torch.save of a view would store the whole grown tensor
        out_state = {k: v.clone() for k, v in restrict_output(out_state, int(n_tokens)).items()}
        cfg["token_list"] = cfg["token_list"][: int(n_tokens)]
    cfg["pathway_masks"] = None
    cfg["languages"] = [lang]
    # Options of our model that ESPnet's ESPnetASRTransducerModel does not take.
    cfg["model_conf"] = {k: v for k, v in (cfg.get("model_conf") or {}).items()
                         if k not in ("rnnt_loss_impl", "output_vocab_sizes")}
    if cfg.get("normalize") == "causal_mvn":
        logging.warning("normalize: causal_mvn is espnet_pathways' (normalize.py): decode the "
                        "export with PathwaySpeech2Text or espnet_pathways.bin.recognize; "
                        "plain ESPnet's Speech2Text knows global_mvn and utterance_mvn only")
    if check:  # plain ESPnet must find every parameter of its model in the file (checked
        # before anything is written: a failed check keeps an earlier export)
        import espnet2.tasks.asr_transducer as espnet_task

        from espnet_pathways.tasks.asr_pathways import normalize_choices, substituted

        # causal_mvn stores what global_mvn stores: ESPnet's own model with our choices.
        with substituted(espnet_task, normalize_choices=normalize_choices):
            model = espnet_task.ASRTransducerTask.build_model(argparse.Namespace(**cfg))
        missing, unexpected = model.load_state_dict(out_state, strict=False)
        if missing:
            raise RuntimeError(f"exported state dict lacks {missing} (plain ESPnet would "
                               "leave them randomly initialised)")
        if unexpected:
            logging.warning("entries plain ESPnet ignores: %s", unexpected)

    kept = masks.kept_parameters(lang)
    info = {
        "source_config": str(asr_train_config),
        "source_model": str(asr_model_file),
        "pathway_masks": str(pathway_masks or cfg.get("pathway_masks") or masks.source),
        "lang": lang,
        "prunable_weights": masks.total_parameters(),
        "kept_weights": kept,
        "sparsity": round(masks.sparsity(lang), 6),
        "all_parameters": int(sum(v.numel() for v in out_state.values())),
    }
    out = Path(out_dir)
    with exclusive_lock(out, "this pathway export"):  # two exports into one dir: one fails
        # Each file through a temporary name: a failed export keeps an earlier one whole
        # (model.pth first, config.yaml then: a config never names a model not yet there;
        # export.yaml, the record, last).
        atomic_torch_save(out_state, out / "model.pth", suffix=".pth")
        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg, allow_unicode=True))
        if quantize_asr_model:
            from espnet_pathways.quantize import quantize_model_file

            q = quantize_model_file(out / "config.yaml", out / "model.pth",
                                    out / "model.int8.pth", quantize_modules)
            info.update(int8_model=q["int8_file"], quantize_modules=q["quantize_modules"])
        atomic_write_text(out / "export.yaml", yaml.safe_dump(info))
    logging.info("exported %s pathway (sparsity %.3f) to %s", lang, info["sparsity"], out)
    return info


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, masks_help="Mask file (default: the config's pathway_masks)")
    p.add_argument("--lang", required=True)
    p.add_argument("--out_dir", required=True)
    p.add_argument("--quantize_asr_model", type=str2bool, default=False,
                   help="Also write model.int8.pth: the pathway in dynamic int8 (as ESPnet's option)")
    p.add_argument("--quantize_modules", nargs="*", default=None,
                   help="Modules to quantize (stored format: Linear, the default)")
    p.add_argument("--log_level", type=lambda x: x.upper(), default="INFO")
    return p


def main(cmd: Optional[List[str]] = None) -> Dict[str, Any]:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    return export_pathway(args.asr_train_config, args.asr_model_file, args.lang,
                          args.out_dir, pathway_masks=args.pathway_masks,
                          quantize_asr_model=args.quantize_asr_model,
                          quantize_modules=args.quantize_modules)


if __name__ == "__main__":
    run(main)
