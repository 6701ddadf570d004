#!/usr/bin/env python3
"""Streaming decoding cost of LM shallow fusion, and what the LM prefix cache saves.

ESPnet's default transducer search asks the fused LM about the best hypothesis at every
expansion; a hypothesis that emits blank is asked about again at the next frame with the
same prefix.  ``espnet_pathways.lm_fusion.TokenBonusLM`` caches the LM's answers by prefix
(exact for an RNN LM).  This decodes the same utterances three ways, interleaved, each
utterance in its own language with that language's LM (``{lang}`` in the LM paths, as the
recipe's stage 11 does): without the LM, with the LM but the cache bypassed, and with the
cache; it prints each real-time factor, the ratios measured in this run, the LM calls
and distinct prefixes, and checks that the cached and uncached decodings are identical.

    python benchmarks/bench_lm_fusion.py --asr_train_config exp/asr_dense/config.yaml \
        --asr_model_file exp/asr_dense/latest.pth \
        --lm_train_config 'exp/lm_shared80_{lang}/config.yaml' \
        --lm_file 'exp/lm_shared80_{lang}/valid.loss.best.pth' --data dump/raw/dev --n 40
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_streaming_rtf import add_decoding_args, every_kth_utterance  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_decoding_args(p, n=40)
    p.add_argument("--lm_train_config", required=True, help="may hold {lang}")
    p.add_argument("--lm_file", required=True, help="may hold {lang}")
    p.add_argument("--lm_weight", type=float, default=0.3)
    p.add_argument("--lm_token_bonus", type=float, default=0.6)
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.lm_fusion import TokenBonusLM

    reader, utt2lang, keys = every_kth_utterance(args.data, args.n)
    audio = {k: reader[k][1] for k in keys}
    seconds = sum(len(a) for a in audio.values()) / 16000
    common = dict(asr_train_config=args.asr_train_config, asr_model_file=args.asr_model_file,
                  streaming=True, decoding_window=args.decoding_window,
                  beam_size=args.beam_size)
    plain = PathwaySpeech2Text(**common)
    fused = PathwaySpeech2Text(**common, lm_train_config=args.lm_train_config,
                               lm_file=args.lm_file, lm_weight=args.lm_weight,
                               lm_token_bonus=args.lm_token_bonus)
    cached_score = TokenBonusLM.score

    def uncached_score(self, y, state, x):
        logp, new_state = self.lm.score(y, state, x)
        return (logp + self.offset).tolist(), new_state

    calls: List[Tuple[int, ...]] = []
    n_calls = n_prefixes = 0

    def counting_score(self, y, state, x):
        calls.append(tuple(y.tolist()))
        return cached_score(self, y, state, x)

    elapsed: Dict[str, float] = {"no LM": 0.0, "LM, no cache": 0.0, "LM, cache": 0.0}
    hyps: Dict[str, List[List[int]]] = {"LM, no cache": [], "LM, cache": []}
    for k in keys:  # interleaved: the machine's speed changes alike for the three
        lang = utt2lang[k]
        for name, s2t, score in (("no LM", plain, None), ("LM, no cache", fused, uncached_score),
                                 ("LM, cache", fused, counting_score)):
            if score is not None:
                TokenBonusLM.score = score
            if fused.per_language_lms is not None:  # each utterance starts with no cache
                fused.per_language_lms.clear_caches()
            elif fused.beam_search.use_lm:
                fused.beam_search.lm.clear_cache()
            t = time.perf_counter()
            out = s2t.decode_streaming_utterance(audio[k], lang=lang)
            elapsed[name] += time.perf_counter() - t
            n_calls, n_prefixes = n_calls + len(calls), n_prefixes + len(set(calls))
            calls.clear()
            if name in hyps:
                hyps[name].append(out[0].yseq if out else [])
    TokenBonusLM.score = cached_score
    rtf = {name: e / seconds for name, e in elapsed.items()}
    print(f"{len(keys)} utterances, {seconds:.0f} s of audio, {args.threads} thread(s)")
    for name, r in rtf.items():
        print(f"  {name:14s} RTF {r:.4f}  ({r / rtf['no LM']:.2f}x no LM)")
    print(f"  cache: {rtf['LM, no cache'] / rtf['LM, cache']:.2f}x faster than no cache; "
          f"{n_calls} LM calls for {n_prefixes} distinct prefixes (per utterance)")
    same = hyps["LM, cache"] == hyps["LM, no cache"]
    print(f"  cached and uncached best hypotheses identical: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
