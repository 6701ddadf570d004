#!/usr/bin/env python3
"""Recognise speech with a packed (or unpacked) pathway model, in a chosen language.

    # one file: prints the text
    python -m espnet_pathways.bin.recognize --model exp/asr_pathways_imp/pathways.zip \
        --lang it --wav utt.wav
    # a wav.scp: progress bar, ESPnet's <output_dir>/1best_recog/{text,token,token_int,score}
    python -m espnet_pathways.bin.recognize --model pathways.zip --utt2lang data/test/utt2lang \
        --wav_scp data/test/wav.scp --output_dir out --streaming true

``--model`` is anything ``espnet_model_zoo``'s ``ModelDownloader`` takes (a packed zip,
a model-zoo name, a Hugging Face id); compact zips are expanded on first use.  Instead of
``--model``, ``--asr_train_config``/``--asr_model_file`` use an experiment directory.
The language is ``--lang`` (every utterance) or ``--utt2lang`` (per utterance).

A wav.scp run holds a lock on ``--output_dir`` (a second run there is refused), moves its
results into place only when complete, and skips a bad utterance into
``<output_dir>/bad_utts`` with exit status 1 at the end (``--skip_bad false``: stop at
once); see :mod:`espnet_pathways.decode_list`.  Errors are one line (``--verbose``: with
the traceback).
``--quantize_asr_model true`` decodes in dynamic int8 (ESPnet's options; a pathway model
is quantized per language); a model stored in int8 (``export_pathway
--quantize_asr_model true``) is decoded in int8 without it (docs/deploy.md).
"""
import argparse
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from espnet2.utils.types import str2bool, str_or_none

from espnet_pathways.bin._cli import run, setup_logging


#: BeamSearchTransducer's search algorithms (espnet2/asr_transducer/beam_search_transducer.py)
SEARCH_TYPES = ("default", "tsd", "alsd", "maes")


def load_model(
    model: Optional[str] = None,
    asr_train_config: Optional[str] = None,
    asr_model_file: Optional[str] = None,
    cachedir: Optional[str] = None,
    use_lm: bool = True,
    **kwargs: Any,
):
    """A :class:`~espnet_pathways.inference.PathwaySpeech2Text` from a packed model
    (``model``; with the LM it carries unless ``use_lm`` is false, at its packed fusion
    weights unless ``kwargs`` give them) or from training outputs
    (``asr_train_config``/``asr_model_file``, an LM by ``lm_train_config``/``lm_file``)."""
    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.packing import decoding_kwargs, unpack_model

    if model is not None:
        if asr_train_config or asr_model_file:
            raise ValueError("give either --model or --asr_train_config/--asr_model_file")
        files: Dict[str, Any] = decoding_kwargs(unpack_model(model, cachedir=cachedir),
                                                use_lm=use_lm)
    elif asr_model_file is not None:
        files = {"asr_train_config": asr_train_config, "asr_model_file": asr_model_file}
    else:
        raise ValueError("give --model (a packed zip or model name) or --asr_model_file")
    files.update({k: v for k, v in kwargs.items() if v is not None})
    return PathwaySpeech2Text(**files)


def recognize_file(s2t, wav: Union[str, Path], lang: Optional[str] = None) -> str:
    """The text of one audio file (mono, at the model's sampling rate)."""
    from espnet_pathways.decode_list import decode, model_sampling_rate, read_audio_file

    speech = read_audio_file(wav, model_sampling_rate(s2t))
    results = decode(s2t, speech, lang)
    return (results[0][0] or "").strip() if results else ""


def recognize_scp(
    s2t,
    wav_scp: Union[str, Path],
    output_dir: Union[str, Path],
    utt2lang: Optional[Dict[str, Optional[str]]] = None,
    lang: Optional[str] = None,
    nbest: int = 1,
    progress: bool = True,
    skip_bad: bool = True,
) -> Dict[str, str]:
    """Decode every utterance of ``wav_scp``; writes ESPnet's ``<n>best_recog`` files
    (:func:`espnet_pathways.decode_list.decode_utterances`: bad utterances are skipped
    into ``bad_utts``, results move into place only when complete) and returns
    ``{utt: text}`` of the best hypotheses."""
    from espnet_pathways.decode_list import (
        UtteranceReader,
        check_languages,
        decode_utterances,
        model_sampling_rate,
    )

    reader = UtteranceReader(wav_scp, model_sampling_rate(s2t))
    keys = reader.keys()
    if utt2lang is not None:
        missing = [k for k in keys if k not in utt2lang]
        if missing:
            raise KeyError(f"{len(missing)} utterance(s) of {wav_scp} have no language in "
                           f"utt2lang, e.g. {' '.join(missing[:3])}")
        langs = {k: utt2lang[k] for k in keys}
    else:
        langs = {k: lang for k in keys}
    check_languages(s2t, langs, "utt2lang" if utt2lang is not None else "--lang")
    summary = decode_utterances(s2t, reader, keys, langs, output_dir, nbest=nbest,
                                skip_bad=skip_bad, progress=progress)
    return summary.texts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", type=str_or_none, help="Packed zip, model-zoo name or HF id")
    g.add_argument("--asr_train_config", type=str_or_none)
    g.add_argument("--asr_model_file", type=str_or_none)
    g.add_argument("--pathway_masks", type=str_or_none, help="Override the config's masks")
    g.add_argument("--cachedir", type=str_or_none, help="espnet_model_zoo cache dir")
    g = p.add_argument_group("language model (shallow fusion)")
    g.add_argument("--use_lm", type=str2bool, default=True,
                   help="Fuse the LM a packed model carries (false: the acoustic model alone)")
    g.add_argument("--lm_train_config", type=str_or_none,
                   help="With --asr_model_file: an LM's config (espnet2.bin.lm_train)")
    g.add_argument("--lm_file", type=str_or_none, help="With --asr_model_file: the LM")
    g.add_argument("--lm_weight", type=float, default=None,
                   help="The LM's weight (default: the packed decoding config's; ESPnet's 1.0 "
                        "with --lm_file)")
    g.add_argument("--lm_token_bonus", type=float, default=None,
                   help="Reward per emitted token under fusion (default: the packed decoding "
                        "config's; 0)")
    g = p.add_argument_group("input")
    g.add_argument("--wav", type=str_or_none, help="One audio file: print its text")
    g.add_argument("--wav_scp", type=str_or_none, help="Kaldi wav.scp (needs --output_dir)")
    g.add_argument("--output_dir", type=str_or_none)
    g.add_argument("--lang", type=str_or_none, help="Language of every utterance")
    g.add_argument("--utt2lang", type=str_or_none, help="Language of each utterance")
    g = p.add_argument_group("decoding")
    g.add_argument("--streaming", type=str2bool, default=False)
    g.add_argument("--decoding_window", type=int, default=640, help="Chunk length in ms")
    g.add_argument("--left_context", type=int, default=32)
    g.add_argument("--beam_size", type=int, default=8,
                   help="Hypotheses kept (the recipe's conf/decode.yaml: 8)")
    g.add_argument("--search_type", default="maes", choices=SEARCH_TYPES,
                   help="ESPnet's BeamSearchTransducer search (the recipe's conf/decode.yaml: "
                        "maes, chosen on dev: conf/tuning/dense_tuning.md, round 19)")
    g.add_argument("--nbest", type=int, default=1)
    g.add_argument("--ngpu", type=int, default=0)
    g.add_argument("--progress", type=str2bool, default=True)
    g.add_argument("--skip_bad", type=str2bool, default=True,
                   help="Skip a bad utterance (listed in <output_dir>/bad_utts, exit status "
                        "1 at the end); false: stop at the first one")
    g = p.add_argument_group("dynamic quantization (ESPnet's options)")
    g.add_argument("--quantize_asr_model", type=str2bool, default=False,
                   help="Decode with int8 weights (a pathway model: per language)")
    g.add_argument("--quantize_modules", nargs="*", default=None,
                   help="torch.nn modules to quantize: Linear (default), LSTM")
    g.add_argument("--quantize_dtype", default="qint8", choices=["qint8", "float16"])
    p.add_argument("--log_level", type=lambda x: x.upper(), default="WARNING")
    return p


def main(cmd: Optional[List[str]] = None) -> Union[str, Dict[str, str]]:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    if (args.wav is None) == (args.wav_scp is None):
        raise ValueError("give exactly one of --wav and --wav_scp")
    if args.wav_scp is not None and args.output_dir is None:
        raise ValueError("--wav_scp needs --output_dir")
    if args.wav is not None and args.utt2lang is not None:
        raise ValueError("--utt2lang is for --wav_scp; give --lang with --wav")
    if args.wav is not None:
        return _recognize_one(args)
    from espnet_pathways.fileio import exclusive_lock

    # Held from before the model loads to the end: a second run on the same directory
    # is refused at once instead of merging its lines into this one's.
    with exclusive_lock(args.output_dir, "recognition results"):
        return _recognize_list(args)


def load_from_args(args: argparse.Namespace):
    """The recogniser :func:`main` decodes with, from its parsed arguments."""
    return load_model(
        model=args.model, asr_train_config=args.asr_train_config,
        asr_model_file=args.asr_model_file, cachedir=args.cachedir,
        use_lm=args.use_lm, lm_train_config=args.lm_train_config, lm_file=args.lm_file,
        lm_weight=args.lm_weight, lm_token_bonus=args.lm_token_bonus,
        pathway_masks=args.pathway_masks, device="cuda" if args.ngpu > 0 else "cpu",
        beam_size=args.beam_size, beam_search_config={"search_type": args.search_type},
        nbest=args.nbest, streaming=args.streaming,
        decoding_window=args.decoding_window, left_context=args.left_context,
        quantize_asr_model=args.quantize_asr_model, quantize_modules=args.quantize_modules,
        quantize_dtype=args.quantize_dtype,
    )


def _recognize_one(args: argparse.Namespace) -> str:
    s2t = load_from_args(args)
    text = recognize_file(s2t, args.wav, lang=args.lang)
    print(text)
    return text


def _recognize_list(args: argparse.Namespace) -> Dict[str, str]:
    utt2lang = None
    if args.utt2lang is not None:
        from espnet_pathways.languages import read_utt2lang

        utt2lang = read_utt2lang(args.utt2lang)
    s2t = load_from_args(args)
    texts = recognize_scp(s2t, args.wav_scp, args.output_dir, utt2lang=utt2lang,
                          lang=args.lang, nbest=args.nbest, progress=args.progress,
                          skip_bad=args.skip_bad)
    print(f"decoded {len(texts)} utterances -> {Path(args.output_dir) / '1best_recog'}",
          file=sys.stderr)
    return texts


if __name__ == "__main__":
    run(main)
