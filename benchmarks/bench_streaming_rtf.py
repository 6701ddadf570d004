#!/usr/bin/env python3
"""Streaming real-time factor of a trained model on this CPU.

Decodes utterances of a Kaldi wav.scp chunk by chunk (``decoding_window`` ms through the
encoder's ``chunk_forward``, as the recipe's stage 11 does), each in its own language,
and prints decoding time / audio duration, overall and per language.

    python benchmarks/bench_streaming_rtf.py --asr_train_config exp/asr_dense/config.yaml \
        --asr_model_file exp/asr_dense/latest.pth --data dump/raw/test --n 100
"""
from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import torch


def add_decoding_args(p: argparse.ArgumentParser, n: int) -> None:
    """The options the streaming benchmarks share: the model, the utterances, the search."""
    p.add_argument("--asr_train_config", required=True)
    p.add_argument("--asr_model_file", required=True)
    p.add_argument("--data", type=Path, required=True, help="dir with wav.scp and utt2lang")
    p.add_argument("--n", type=int, default=n, help="utterances (every k-th of the set)")
    p.add_argument("--decoding_window", type=int, default=640)
    p.add_argument("--beam_size", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)


def every_kth_utterance(data: Path, n: int):
    """(reader, utt2lang, keys): ``n`` utterances of ``data``, every k-th of its wav.scp."""
    from espnet2.fileio.sound_scp import SoundScpReader

    from espnet_pathways.languages import read_utt2lang

    reader = SoundScpReader(str(data / "wav.scp"), dtype="float32")
    keys = list(reader.keys())
    return reader, read_utt2lang(data / "utt2lang"), keys[:: max(1, len(keys) // n)][:n]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_decoding_args(p, n=100)
    p.add_argument("--pathway_masks", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from espnet_pathways.inference import PathwaySpeech2Text

    reader, utt2lang, keys = every_kth_utterance(args.data, args.n)
    keys = sorted(keys, key=lambda k: (utt2lang[k], k))
    s2t = PathwaySpeech2Text(asr_train_config=args.asr_train_config,
                             asr_model_file=args.asr_model_file, pathway_masks=args.pathway_masks,
                             streaming=True, decoding_window=args.decoding_window,
                             beam_size=args.beam_size)
    audio, cpu = defaultdict(float), defaultdict(float)
    for k in keys:
        rate, speech = reader[k]
        t = time.perf_counter()
        s2t.decode_streaming_utterance(speech, lang=utt2lang[k])
        cpu[utt2lang[k]] += time.perf_counter() - t
        audio[utt2lang[k]] += len(speech) / rate
    print(f"{len(keys)} utterances, {sum(audio.values()):.1f} s audio, window "
          f"{args.decoding_window} ms, beam {args.beam_size}, {args.threads} thread(s)")
    for lang in sorted(audio):
        print(f"  {lang}: RTF {cpu[lang] / audio[lang]:.3f}")
    print(f"  all: RTF {sum(cpu.values()) / sum(audio.values()):.3f}")


if __name__ == "__main__":
    main()
