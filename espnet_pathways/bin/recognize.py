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
``--quantize_asr_model true`` decodes in dynamic int8 (ESPnet's options; a pathway model
is quantized per language); a model stored in int8 (``export_pathway
--quantize_asr_model true``) is decoded in int8 without it (docs/deploy.md).
"""
import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from espnet2.utils.types import str2bool, str_or_none


def load_model(
    model: Optional[str] = None,
    asr_train_config: Optional[str] = None,
    asr_model_file: Optional[str] = None,
    cachedir: Optional[str] = None,
    **kwargs: Any,
):
    """A :class:`~espnet_pathways.inference.PathwaySpeech2Text` from a packed model
    (``model``) or from training outputs (``asr_train_config``/``asr_model_file``)."""
    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.packing import unpack_model

    if model is not None:
        if asr_train_config or asr_model_file:
            raise ValueError("give either --model or --asr_train_config/--asr_model_file")
        files: Dict[str, Any] = unpack_model(model, cachedir=cachedir)
    elif asr_model_file is not None:
        files = {"asr_train_config": asr_train_config, "asr_model_file": asr_model_file}
    else:
        raise ValueError("give --model (a packed zip or model name) or --asr_model_file")
    if kwargs.get("pathway_masks") is None:
        kwargs.pop("pathway_masks", None)
    files.update(kwargs)
    return PathwaySpeech2Text(**files)


def decode(s2t, speech, lang: Optional[str]):
    """n-best results ``(text, token, token_int, hyp)`` of one utterance."""
    if s2t.streaming:
        hyps = s2t.decode_streaming_utterance(speech, lang=lang)
    else:
        hyps = s2t(speech, lang=lang)
    return s2t.hypotheses_to_results(hyps)


def recognize_file(s2t, wav: Union[str, Path], lang: Optional[str] = None) -> str:
    """The text of one audio file (mono, at the model's sampling rate)."""
    import soundfile

    speech, rate = soundfile.read(str(wav), dtype="float32", always_2d=False)
    _check_rate(s2t, rate, wav)
    if speech.ndim > 1:
        raise ValueError(f"{wav}: {speech.shape[1]} channels; give mono audio")
    results = decode(s2t, speech, lang)
    return (results[0][0] or "").strip() if results else ""


def _check_rate(s2t, rate: int, where) -> None:
    fs = (getattr(s2t.asr_train_args, "frontend_conf", None) or {}).get("fs", 16000)
    if isinstance(fs, str):
        fs = int(fs.lower().replace("k", "000"))
    if rate != fs:
        raise ValueError(f"{where}: sampling rate {rate} Hz, the model needs {fs} Hz")


def recognize_scp(
    s2t,
    wav_scp: Union[str, Path],
    output_dir: Union[str, Path],
    utt2lang: Optional[Dict[str, Optional[str]]] = None,
    lang: Optional[str] = None,
    nbest: int = 1,
    progress: bool = True,
) -> Dict[str, str]:
    """Decode every utterance of ``wav_scp``; writes ESPnet's ``<n>best_recog`` files with
    ``DatadirWriter`` and returns ``{utt: text}`` of the best hypotheses."""
    from tqdm import tqdm

    from espnet2.fileio.datadir_writer import DatadirWriter
    from espnet2.fileio.sound_scp import SoundScpReader

    reader = SoundScpReader(str(wav_scp), dtype="float32", always_2d=False)
    keys = list(reader.keys())
    if utt2lang is not None:
        missing = [k for k in keys if k not in utt2lang]
        if missing:
            raise KeyError(f"{len(missing)} utterances have no language in utt2lang, "
                           f"e.g. {missing[:3]}")
        langs = {k: utt2lang[k] for k in keys}
    else:
        langs = {k: lang for k in keys}
    # Language by language: a pathway switch rewrites the masked weights.
    keys.sort(key=lambda k: (langs[k] or "", k))
    texts: Dict[str, str] = {}
    with DatadirWriter(str(output_dir)) as writer:
        for key in tqdm(keys, desc="recognize", unit="utt", disable=not progress,
                        file=sys.stderr):
            rate, speech = reader[key]
            _check_rate(s2t, rate, key)
            try:
                results = decode(s2t, speech, langs[key])
            except Exception as e:
                raise RuntimeError(f"decoding utterance {key} ({langs[key]}) failed: {e}") from e
            for n, (text, token, token_int, hyp) in enumerate(results[:nbest], 1):
                w = writer[f"{n}best_recog"]
                w["token"][key] = " ".join(token)
                w["token_int"][key] = " ".join(map(str, token_int))
                w["score"][key] = str(float(hyp.score))
                w["text"][key] = (text or "").strip()
            texts[key] = (results[0][0] or "").strip() if results else ""
    return texts


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_argument_group("model")
    g.add_argument("--model", type=str_or_none, help="Packed zip, model-zoo name or HF id")
    g.add_argument("--asr_train_config", type=str_or_none)
    g.add_argument("--asr_model_file", type=str_or_none)
    g.add_argument("--pathway_masks", type=str_or_none, help="Override the config's masks")
    g.add_argument("--cachedir", type=str_or_none, help="espnet_model_zoo cache dir")
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
    g.add_argument("--beam_size", type=int, default=4)
    g.add_argument("--nbest", type=int, default=1)
    g.add_argument("--ngpu", type=int, default=0)
    g.add_argument("--progress", type=str2bool, default=True)
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
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s (%(module)s:%(lineno)d) %(levelname)s: %(message)s")
    if (args.wav is None) == (args.wav_scp is None):
        raise ValueError("give exactly one of --wav and --wav_scp")
    if args.wav_scp is not None and args.output_dir is None:
        raise ValueError("--wav_scp needs --output_dir")
    if args.wav is not None and args.utt2lang is not None:
        raise ValueError("--utt2lang is for --wav_scp; give --lang with --wav")
    s2t = load_model(
        model=args.model, asr_train_config=args.asr_train_config,
        asr_model_file=args.asr_model_file, cachedir=args.cachedir,
        pathway_masks=args.pathway_masks, device="cuda" if args.ngpu > 0 else "cpu",
        beam_size=args.beam_size, nbest=args.nbest, streaming=args.streaming,
        decoding_window=args.decoding_window, left_context=args.left_context,
        quantize_asr_model=args.quantize_asr_model, quantize_modules=args.quantize_modules,
        quantize_dtype=args.quantize_dtype,
    )
    if args.wav is not None:
        text = recognize_file(s2t, args.wav, lang=args.lang)
        print(text)
        return text
    utt2lang = None
    if args.utt2lang is not None:
        from espnet_pathways.languages import read_utt2lang

        utt2lang = read_utt2lang(args.utt2lang)
    texts = recognize_scp(s2t, args.wav_scp, args.output_dir, utt2lang=utt2lang,
                          lang=args.lang, nbest=args.nbest, progress=args.progress)
    print(f"decoded {len(texts)} utterances -> {Path(args.output_dir) / '1best_recog'}",
          file=sys.stderr)
    return texts


if __name__ == "__main__":
    try:
        main()
    except (ValueError, KeyError, FileNotFoundError) as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
