#!/usr/bin/env python3
"""Decode a Kaldi data dir (or wav files) with a (pathway) transducer, streaming or not.

    python -m espnet_pathways.bin.asr_pathways_inference \
        --asr_train_config exp/asr_dense/config.yaml \
        --asr_model_file exp/asr_dense/valid.loss.best.pth \
        --data_path_and_name_and_type dump/raw/test_it/wav.scp,speech,sound \
        --utt2lang dump/raw/test_it/utt2lang --output_dir exp/asr_dense/decode/test_it \
        --streaming true --decoding_window 640

Each utterance is decoded in its own language (``--utt2lang``, or ``--lang`` for all);
with ``--streaming true`` the audio is fed in ``--decoding_window`` ms chunks through
``Speech2Text.streaming_decode`` (the encoder's ``chunk_forward``), the real streaming
path.  Writes ESPnet's ``<output_dir>/1best_recog/{text,token,token_int,score}`` and
``<output_dir>/rtf`` (decoding time / audio duration).
"""
import argparse
import logging
import time
from typing import List, Optional

from espnet2.fileio.datadir_writer import DatadirWriter
from espnet2.utils import config_argparse
from espnet2.utils.types import str2bool, str2triple_str, str_or_none

from espnet_pathways.bin._cli import run, setup_logging
from espnet_pathways.languages import read_utt2lang


def get_parser() -> argparse.ArgumentParser:
    p = config_argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--log_level", type=lambda x: x.upper(), default="INFO")
    p.add_argument("--output_dir", required=True)
    p.add_argument("--ngpu", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data_path_and_name_and_type", type=str2triple_str,
                   action="append", required=True)
    p.add_argument("--key_file", type=str_or_none, help="Decode only these utterances")
    p.add_argument("--utt2lang", type=str_or_none, help="Language of each utterance")
    p.add_argument("--lang", type=str_or_none, help="Language of all utterances")
    p.add_argument("--asr_train_config", type=str, required=True)
    p.add_argument("--asr_model_file", type=str, required=True)
    p.add_argument("--pathway_masks", type=str_or_none,
                   help="Mask file (default: the training config's)")
    p.add_argument("--beam_size", type=int, default=4)
    p.add_argument("--beam_search_config", default={}, help="BeamSearchTransducer options")
    p.add_argument("--streaming", type=str2bool, default=True)
    p.add_argument("--decoding_window", type=int, default=640, help="Chunk length in ms")
    p.add_argument("--left_context", type=int, default=32)
    p.add_argument("--nbest", type=int, default=1)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    import torch

    from espnet2.fileio.sound_scp import SoundScpReader
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from espnet_pathways.inference import PathwaySpeech2Text, log_decoder

    set_all_random_seed(args.seed)
    torch.set_num_threads(1)  # jobs run in parallel, one per core
    (path, name, kind), = [t for t in args.data_path_and_name_and_type if t[1] == "speech"]
    if kind != "sound":
        raise ValueError(f"speech must be of type 'sound' (a wav.scp), got {kind!r}")
    reader = SoundScpReader(path, dtype="float32", always_2d=False)
    keys = list(reader.keys())
    if args.key_file:
        with open(args.key_file, encoding="utf-8") as f:
            keys = [line.split()[0] for line in f if line.strip()]
    if args.utt2lang:
        utt2lang = read_utt2lang(args.utt2lang)
        missing = [k for k in keys if k not in utt2lang]
        if missing:
            raise KeyError(f"{len(missing)} utterances have no entry in {args.utt2lang}, "
                           f"e.g. {missing[:3]}")
    elif args.lang:
        utt2lang = {k: args.lang for k in keys}
    else:
        utt2lang = {k: None for k in keys}

    s2t = PathwaySpeech2Text(
        asr_train_config=args.asr_train_config, asr_model_file=args.asr_model_file,
        pathway_masks=args.pathway_masks, beam_search_config=args.beam_search_config,
        device="cuda" if args.ngpu > 0 else "cpu", beam_size=args.beam_size,
        nbest=args.nbest, streaming=args.streaming,
        decoding_window=args.decoding_window, left_context=args.left_context,
    )
    log_decoder(s2t)
    # Decode language by language: a pathway switch rewrites the masked weights.
    keys = sorted(keys, key=lambda k: (utt2lang[k] or "", k))
    audio_sec = 0.0
    start = time.perf_counter()
    with DatadirWriter(args.output_dir) as writer:
        for i, key in enumerate(keys, 1):
            rate, speech = reader[key]
            audio_sec += len(speech) / rate
            lang = utt2lang[key]
            try:
                if s2t.streaming:
                    hyps = s2t.decode_streaming_utterance(speech, lang=lang)
                else:
                    hyps = s2t(speech, lang=lang)
                results = s2t.hypotheses_to_results(hyps)
            except Exception as e:
                raise RuntimeError(f"decoding utterance {key} ({lang}) failed: {e}") from e
            for n, (text, token, token_int, hyp) in enumerate(results[: args.nbest], 1):
                w = writer[f"{n}best_recog"]
                w["token"][key] = " ".join(token)
                w["token_int"][key] = " ".join(map(str, token_int))
                w["score"][key] = str(float(hyp.score))
                w["text"][key] = (text or "").strip()
            if i % 50 == 0:
                logging.info("decoded %d/%d utterances", i, len(keys))
        elapsed = time.perf_counter() - start
        writer["rtf"]["all"] = f"{elapsed / max(audio_sec, 1e-9):.4f} {elapsed:.2f} {audio_sec:.2f}"
    logging.info("decoded %d utterances, %.1f s audio in %.1f s: RTF %.3f",
                 len(keys), audio_sec, elapsed, elapsed / max(audio_sec, 1e-9))


if __name__ == "__main__":
    run(main)
