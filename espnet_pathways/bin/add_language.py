#!/usr/bin/env python3
"""Grow a trained pathway model by one language: tokens, weights, masks and config.

    python -m espnet_pathways.bin.add_language \
        --asr_train_config exp/asr_pathways_imp/config.yaml \
        --asr_model_file exp/asr_pathways_imp/latest.pth \
        --pathway_masks exp/masks/lsp_imp.pth --lang cs \
        --text dump/raw/add_cs/train_cs/text --vocab_size 100 --model_type char \
        --segment dump/raw/add_cs/train_cs dump/raw/add_cs/dev_cs --out_dir exp/add_cs/init \
        --init_free_from exp/asr_dense/latest.pth

Writes into ``--out_dir``: ``tokens.txt`` (the old token list with the new language's
pieces appended), ``model.pth`` (the old weights, vocabulary-sized tensors with rows
appended), ``masks.pth`` (the old masks plus an all-ones pathway for the new language,
which IMP then prunes), ``config.yaml`` (the training config of the grown model:
``languages`` + the new one, ``model_conf.output_vocab_sizes``) and ``add_language.yaml``
(what was added); with ``--train_config``, ``train.yaml`` (that config plus the grown
model's ``model_conf.output_vocab_sizes``).  A dense model's config (no masks) grows
its vocabulary only (the recipe's dense baseline).  See :mod:`espnet_pathways.add_language`.

Start point of the new pathway: ``--init_free_from <dense model>`` fills the weights
outside every old pathway (zeros in a trained pathway model) with the dense model's;
``--shared_from <old lang>`` starts the new mask from that language's pathway plus every
free weight instead of all-ones.  New output rows copy the old row of the same piece
without diacritics where there is one, else ``<unk>`` (``add_language.yaml`` lists it).

Pieces: with ``token_type: char`` the new language's characters; otherwise a
sentencepiece model trained on ``--text`` (``<out_dir>/tokens/<lang>/bpe.model``) whose
pieces the new language's text is segmented into (``DIR/text.pieces`` for each
``--segment`` dir), read as ``token_type: word`` like the merged vocabulary of the
paper; the old languages' pieces keep their ids, and their hypotheses are joined back
into text the same way (``token_mode: merged``).

Bad input (a missing or garbled config, text, model or mask file, an unknown
``--shared_from`` language, a ``--segment`` dir with another language's utterances) is
one error line naming it, exit status 1, and nothing is written: every input is read and
checked first, each output goes through a temporary name, and the word-piece model is
trained beside ``--out_dir`` and moved in after the grown model.
"""
import argparse
import logging
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet2.utils.types import str_or_none

from espnet_pathways.bin._cli import add_model_arguments, run, setup_logging


def new_language_pieces(text_file: str, token_type: str, out_dir: Path, lang: str,
                        vocab_size: int, model_type: str) -> List[str]:
    """The output units the new language's text needs."""
    from espnet_pathways import tokens

    text = tokens.read_text(text_file)
    if not text:
        raise ValueError(f"{text_file}: no transcripts for language {lang!r}")
    if token_type == "char":
        return sorted({c for words in text.values() for c in words if not c.isspace()})
    model = tokens.train_sentencepiece(text.values(), out_dir / "tokens" / lang / "bpe",
                                       vocab_size, model_type)
    return tokens.model_pieces(model)


def grow_model(asr_train_config: str, asr_model_file: str, pathway_masks: Optional[str],
               lang: str, pieces: List[str], out_dir: str,
               train_config: Optional[str] = None, init_free_from: Optional[str] = None,
               shared_from: Optional[str] = None) -> Dict[str, Any]:
    """Write the grown model's files into ``out_dir`` (see the module doc); a model without
    masks (dense) grows its vocabulary only.  With ``train_config``, also ``train.yaml``:
    that config with ``model_conf.output_vocab_sizes`` for training the grown model.

    ``init_free_from``: a model file (the dense model the pathway system was trained
    from) whose values fill the weights outside every old pathway (zeros otherwise).
    ``shared_from``: the old language whose pathway the new one starts from (inside the
    old union; all-ones otherwise).  New output rows start from the old row of the same
    character without diacritics where there is one, else ``<unk>``."""
    import yaml

    from espnet_pathways.add_language import (
        fill_free_weights,
        grow_masks,
        grow_state_dict,
        grow_token_list,
        token_row_sources,
    )
    from espnet_pathways.checkpoint import load_state_dict
    from espnet_pathways.fileio import atomic_torch_save, atomic_write_text, read_yaml_mapping
    from espnet_pathways.languages import UnknownLanguageError
    from espnet_pathways.masks import PathwayMasks
    from espnet_pathways.tokens import write_lines

    # Everything is read and checked before the first file is written: a rerun that fails
    # on bad input leaves an earlier grown model in out_dir as it was.
    cfg = read_yaml_mapping(asr_train_config, "training config")
    if not isinstance(cfg.get("token_list"), list):
        raise ValueError(f"{asr_train_config}: not an ESPnet training config with a token list")
    languages = list(cfg.get("languages") or [])
    if lang in languages:
        raise ValueError(f"{asr_train_config}: the model already knows language {lang!r}")
    mask_file = pathway_masks or cfg.get("pathway_masks")
    masks = PathwayMasks.load(mask_file) if mask_file else None  # None: a dense model
    if masks is None and (init_free_from or shared_from):
        raise ValueError(f"{asr_train_config}: a dense model (no pathway masks) has no free "
                         "weights or pathways to start from")
    if shared_from is not None and shared_from not in masks:
        raise UnknownLanguageError(
            f"--shared_from {shared_from!r}: unknown language; {mask_file} has pathways "
            f"for: {' '.join(masks.languages)}")
    train = read_yaml_mapping(train_config, "training config") if train_config else None
    if init_free_from and not Path(init_free_from).is_file():
        raise FileNotFoundError(f"{init_free_from}: model for the free weights not found")
    old_tokens = list(cfg["token_list"])
    grown, added = grow_token_list(old_tokens, pieces)
    state = load_state_dict(asr_model_file)
    if masks is not None:
        masks.check_compatible(state)
    sources = token_row_sources(old_tokens, added)
    new_state = grow_state_dict(state, len(old_tokens), len(grown), sources)
    if init_free_from:
        new_state = fill_free_weights(new_state, masks, load_state_dict(init_free_from))
    new_masks = None if masks is None else grow_masks(masks, lang, len(old_tokens),
                                                      len(grown), shared_from)

    model_conf = dict(cfg.get("model_conf") or {})
    sizes = dict(model_conf.get("output_vocab_sizes") or {})
    for old in languages:
        sizes.setdefault(old, len(old_tokens))
    sizes[lang] = len(grown)
    model_conf["output_vocab_sizes"] = sizes
    out = Path(out_dir)
    cfg.update(token_list=grown, languages=[*languages, lang], model_conf=model_conf,
               pathway_masks=None if masks is None else str(out / "masks.pth"))
    if cfg.get("token_type") == "bpe":  # pieces per language, as the merged vocabulary
        cfg.update(token_type="word", token_mode="merged", bpemodel=None)
    atomic_torch_save(new_state, out / "model.pth", suffix=".pth")
    if new_masks is not None:
        new_masks.save(out / "masks.pth")  # atomic itself
    write_lines(grown, out / "tokens.txt")
    atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg, allow_unicode=True))
    if train is not None:  # the recipe's training config + the grown model's output vocabularies
        train["model_conf"] = {**(train.get("model_conf") or {}),
                               "output_vocab_sizes": sizes}
        atomic_write_text(out / "train.yaml", yaml.safe_dump(train, allow_unicode=True))
    info = {"lang": lang, "source_model": str(asr_model_file), "source_masks": str(mask_file),
            "vocab_size_before": len(old_tokens), "vocab_size_after": len(grown),
            "added_tokens": added,
            "added_rows_from": {t: old_tokens[i] for t, i in zip(added, sources)},
            "free_weights_from": init_free_from or "zero", "shared_from": shared_from,
            "added_parameters": sum(v.numel() for v in new_state.values())
            - sum(v.numel() for v in state.values())}
    atomic_write_text(out / "add_language.yaml", yaml.safe_dump(info, allow_unicode=True))
    logging.info("%s: %d tokens added (%d -> %d) -> %s", lang, len(added), len(old_tokens),
                 len(grown), out)
    return info


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(p, masks_help="default: the config's (a dense model's config has "
                        "none: vocabulary only)")
    p.add_argument("--lang", required=True, help="code of the language to add")
    p.add_argument("--text", required=True, help="the new language's training text (Kaldi)")
    p.add_argument("--vocab_size", type=int, default=100,
                   help="pieces of the new language's sentencepiece model")
    p.add_argument("--model_type", default="unigram", choices=["unigram", "bpe", "char"])
    p.add_argument("--segment", nargs="*", default=[],
                   help="data dirs of the new language whose text is segmented into text.pieces")
    p.add_argument("--train_config", default=None,
                   help="training config copied to <out_dir>/train.yaml with the grown "
                   "model's model_conf.output_vocab_sizes")
    p.add_argument("--init_free_from", type=str_or_none, default=None,
                   help="model file whose weights fill the positions outside every old "
                   "pathway (the dense model the pathway system was trained from); "
                   "default: they stay zero")
    p.add_argument("--shared_from", type=str_or_none, default=None,
                   help="old language whose pathway the new one starts from inside the old "
                   "union (frozen-mode IMP then prunes only the free weights); default: "
                   "all-ones, IMP prunes both regions")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--log_level", default="INFO")
    return p


def read_segment_dirs(dirs: List[str], lang: str) -> Dict[Path, Dict[str, str]]:
    """Each ``--segment`` dir's ``text``, checked to be the new language's alone (its
    ``utt2lang``): only ``lang`` gets a word-piece model here.  Read before anything is
    written, so that a wrong dir fails the run with nothing changed."""
    from espnet_pathways import tokens
    from espnet_pathways.languages import UnknownLanguageError, read_utt2lang

    out: Dict[Path, Dict[str, str]] = {}
    for d in map(Path, dirs):
        text = tokens.read_text(d / "text")
        utt2lang = read_utt2lang(d / "utt2lang")
        for utt in sorted(text):
            if utt not in utt2lang:
                raise KeyError(f"{d / 'utt2lang'}: utterance {utt!r} of {d / 'text'} has "
                               "no language")
            if utt2lang[utt] != lang:
                raise UnknownLanguageError(
                    f"{d / 'utt2lang'}: utterance {utt!r} is {utt2lang[utt]!r}, not the "
                    f"added language {lang!r} (--segment takes {lang!r} data dirs only)")
        out[d] = text
    return out


def main(cmd: Optional[List[str]] = None) -> Dict[str, Any]:
    import tempfile

    from espnet_pathways import tokens
    from espnet_pathways.fileio import read_yaml_mapping

    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    cfg = read_yaml_mapping(args.asr_train_config, "training config")
    token_type = cfg.get("token_type", "bpe")
    out = Path(args.out_dir)
    segment = read_segment_dirs(args.segment, args.lang) if token_type != "char" else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    # The word-piece model is trained beside out_dir and moved in only once the grown
    # model is written: a failed rerun keeps the earlier one with its model.
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as staging:
        stage = Path(staging)
        pieces = new_language_pieces(args.text, token_type, stage, args.lang,
                                     args.vocab_size, args.model_type)
        seg = {d: tokens.segment_merged(text, {u: args.lang for u in text}, stage / "tokens")
               for d, text in segment.items()}
        info = grow_model(args.asr_train_config, args.asr_model_file, args.pathway_masks,
                          args.lang, pieces, args.out_dir, args.train_config,
                          args.init_free_from, args.shared_from)
        model_dir = stage / "tokens" / args.lang
        if model_dir.is_dir():
            (out / "tokens" / args.lang).mkdir(parents=True, exist_ok=True)
            for f in model_dir.iterdir():
                os.replace(f, out / "tokens" / args.lang / f.name)
    for d, pieces_of in seg.items():
        tokens.write_lines((f"{u} {p}" for u, p in sorted(pieces_of.items())), d / "text.pieces")
        logging.info("wrote %s", d / "text.pieces")
    return info


if __name__ == "__main__":
    run(main)
