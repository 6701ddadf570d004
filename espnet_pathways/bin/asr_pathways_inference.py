#!/usr/bin/env python3
"""Decode a Kaldi data dir (or wav files) with a (pathway) transducer, streaming or not.

    python -m espnet_pathways.bin.asr_pathways_inference \
        --asr_train_config exp/asr_dense/config.yaml \
        --asr_model_file exp/asr_dense/latest.pth \
        --data_path_and_name_and_type dump/raw/test_it/wav.scp,speech,sound \
        --utt2lang dump/raw/test_it/utt2lang --output_dir exp/asr_dense/decode/test_it \
        --streaming true --decoding_window 640

Each utterance is decoded in its own language (``--utt2lang``, or ``--lang`` for all);
with ``--streaming true`` the audio is fed in ``--decoding_window`` ms chunks through
``Speech2Text.streaming_decode`` (the encoder's ``chunk_forward``), the real streaming
path.  Writes ESPnet's ``<output_dir>/1best_recog/{text,token,token_int,score}`` and
``<output_dir>/rtf`` (decoding time / audio duration), all moved into place only when the
run is complete (an earlier complete output stays otherwise); a bad utterance is skipped
into ``<output_dir>/bad_utts`` and the run exits 1 at the end (``--skip_bad false``:
stop at the first one).  A second run on the same ``--output_dir`` is refused (lock).
"""
import argparse
import logging
from typing import List, Optional

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
    p.add_argument("--lm_train_config", type=str_or_none,
                   help="Language model for shallow fusion (espnet2.bin.lm_train's config.yaml; "
                        "an RNN LM on the ASR model's token list); with {lang} in the path "
                        "(and in --lm_file's), one LM per language: each utterance's own")
    p.add_argument("--lm_file", type=str_or_none, help="Its checkpoint")
    p.add_argument("--lm_weight", type=float, default=0.0,
                   help="Weight of the LM's log-probabilities in the beam search (0: no LM)")
    p.add_argument("--lm_token_bonus", type=float, default=0.0,
                   help="With the LM: a reward per emitted token, offsetting the LM's negative "
                        "log-probabilities (fusion alone favours deletions)")
    p.add_argument("--beam_size", type=int, default=4)
    p.add_argument("--beam_search_config", default={}, help="BeamSearchTransducer options")
    p.add_argument("--streaming", type=str2bool, default=True)
    p.add_argument("--decoding_window", type=int, default=640, help="Chunk length in ms")
    p.add_argument("--left_context", type=int, default=32)
    p.add_argument("--nbest", type=int, default=1)
    p.add_argument("--skip_bad", type=str2bool, default=True,
                   help="Skip a bad utterance (listed in <output_dir>/bad_utts, exit status "
                        "1 at the end); false: stop at the first one")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.log_level)
    from espnet_pathways.fileio import exclusive_lock

    with exclusive_lock(args.output_dir, "decoding results"):
        decode_dir(args)


def decode_dir(args: argparse.Namespace) -> None:
    """Decode (holding the output directory's lock): see the module doc."""
    import torch

    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed

    from espnet_pathways.decode_list import (
        UtteranceReader,
        check_languages,
        decode_utterances,
        model_sampling_rate,
    )
    from espnet_pathways.fileio import read_two_columns
    from espnet_pathways.inference import PathwaySpeech2Text, log_decoder

    set_all_random_seed(args.seed)
    torch.set_num_threads(1)  # jobs run in parallel, one per core
    speech = [t for t in args.data_path_and_name_and_type if t[1] == "speech"]
    if len(speech) != 1:
        raise ValueError("give exactly one --data_path_and_name_and_type <wav.scp>,speech,sound")
    (path, _, kind), = speech
    if kind != "sound":
        raise ValueError(f"speech must be of type 'sound' (a wav.scp), got {kind!r}")
    scp = read_two_columns(path)
    keys = list(scp)
    if args.key_file:
        keys = list(read_two_columns(args.key_file))
        absent = [k for k in keys if k not in scp]
        if absent:
            raise KeyError(f"{len(absent)} utterance(s) of {args.key_file} are not in {path}, "
                           f"e.g. {' '.join(absent[:3])}")
    if args.utt2lang:
        utt2lang = read_utt2lang(args.utt2lang)
        missing = [k for k in keys if k not in utt2lang]
        if missing:
            raise KeyError(f"{len(missing)} utterance(s) have no entry in {args.utt2lang}, "
                           f"e.g. {' '.join(missing[:3])}")
    else:
        utt2lang = {k: args.lang for k in keys}
    langs = {k: utt2lang[k] for k in keys}

    if (args.lm_train_config is None) != (args.lm_file is None):
        raise ValueError("give both --lm_train_config and --lm_file, or neither")
    use_lm = args.lm_train_config is not None and args.lm_weight != 0.0
    s2t = PathwaySpeech2Text(
        asr_train_config=args.asr_train_config, asr_model_file=args.asr_model_file,
        lm_train_config=args.lm_train_config if use_lm else None,
        lm_file=args.lm_file if use_lm else None, lm_weight=args.lm_weight,
        lm_token_bonus=args.lm_token_bonus if use_lm else 0.0,
        pathway_masks=args.pathway_masks, beam_search_config=args.beam_search_config,
        device="cuda" if args.ngpu > 0 else "cpu", beam_size=args.beam_size,
        nbest=args.nbest, streaming=args.streaming,
        decoding_window=args.decoding_window, left_context=args.left_context,
    )
    log_decoder(s2t)
    if use_lm:
        logging.info("LM fused: %s, weight %s, token bonus %s", args.lm_file, args.lm_weight,
                     args.lm_token_bonus)
    check_languages(s2t, langs, args.utt2lang or "--lang")
    reader = UtteranceReader(path, model_sampling_rate(s2t))
    summary = decode_utterances(s2t, reader, keys, langs, args.output_dir, nbest=args.nbest,
                                skip_bad=args.skip_bad, write_rtf=True)
    logging.info("decoded %d utterances, %.1f s audio in %.1f s: RTF %.3f",
                 len(keys), summary.audio_sec, summary.elapsed,
                 summary.elapsed / max(summary.audio_sec, 1e-9))


if __name__ == "__main__":
    run(main)
