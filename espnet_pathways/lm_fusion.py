"""LM shallow fusion in ESPnet's transducer beam search: a per-token bonus, a prefix
cache, and one LM per language.

``BeamSearchTransducer`` adds ``lm_weight * log p_LM(k | prefix)`` to every expansion by a
token ``k`` and nothing to a blank.  Each log-probability is negative, so fusion alone
makes every emitted token dearer than not emitting it: the search drops tokens
(deletions), which is what the recipe's dev set showed (the LM's weight 0.3 without a
bonus: dev CER 41.7 against 38.4 without the LM, deletions up by half).  The usual remedy
is a constant reward per emitted token (a length or insertion bonus).  ESPnet's search has
no such option; the one place it reads the LM is the scorer's ``score`` / ``batch_score``,
so :class:`TokenBonusLM` wraps the LM there and adds ``bonus / lm_weight`` to each
log-probability: the search then adds ``lm_weight * log p_LM + bonus`` per token.

The wrapper's ``score`` (the default search's one call) also hands the scores back as a
list of floats: the search adds ``lm_weight * scores[k]`` to a float hypothesis score, and
with a tensor there every score of the search became a 0-dim tensor, whose comparisons and
sums in its Python loop made the smoke test's tiny models decode 10x slower with an LM
(RTF 3.2 against 0.33 without the LM; 0.67 with floats).

And ``score`` remembers its answers by prefix.  The default search scores the LM for the
best hypothesis at every expansion, and a hypothesis that emits blank is expanded again at
the next frame with the same prefix and LM state: decoding 25 French dev utterances with
the recipe's dense model, the search asked the LM 9,792 times about 2,243 distinct
prefixes.  ESPnet's search caches the prediction
network's output by label sequence (``decoder.score_cache``) but not the LM's.  An RNN
LM's answer for a prefix does not depend on anything else (its state is the one the same
prefix produced), so the cache returns exactly what the LM would
(``benchmarks/bench_lm_fusion.py``: decoding with the recipe's LMs cost 1.28x the time
without them, 2.03x without the cache).

One LM per language (:class:`PerLanguageLMs`): an LM path with ``{lang}`` in it
(``exp/lm_bpe80_{lang}/config.yaml``) names one LM per language, and the one of the
language being decoded is fused.  A single LM over every language's text scores an
utterance's characters by whichever language its prefix looks like, and the recipe's
smallest language loses: on the held-out-voice dev set, one shared LM cost Italian (8 % of
the LM's text) about 3 CER points while it helped the others (conf/tuning/dense_tuning.md,
rounds 8 and 17).  The decoder knows each utterance's language (``utt2lang``, as the
pathways need it), so each language gets its own LM; ESPnet's search reads its LM from
``beam_search.lm``, which is where the language's LM goes when the language changes.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch

#: In an LM's config or model path: the language decoded (one LM per language).
LANG_FIELD = "{lang}"


class TokenBonusLM(torch.nn.Module):
    """An RNN LM scorer whose log-probabilities are raised by a constant ``offset``."""

    #: prefixes remembered before the cache starts afresh (an entry is the vocabulary's
    #: scores and the LSTM state: ~3 KB for the recipe's LM)
    max_cached: int = 20000

    def __init__(self, lm: torch.nn.Module, offset: float) -> None:
        super().__init__()
        self.lm = lm
        self.offset = float(offset)
        self.rnn_type = lm.rnn_type  # BeamSearchTransducer accepts recurrent LMs only
        self._cache: Dict[Tuple[int, ...], Tuple[List[float], Any]] = {}

    def zero_state(self) -> Any:
        return self.lm.zero_state()

    def score(self, y: torch.Tensor, state: Any, x: Any) -> Tuple[List[float], Any]:
        key = tuple(y.tolist())
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        logp, new_state = self.lm.score(y, state, x)
        if len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[key] = result = ((logp + self.offset).tolist(), new_state)
        return result

    def clear_cache(self) -> None:
        """Forget the cached prefixes (memory only: a cached answer is the LM's own)."""
        self._cache.clear()

    def batch_score(self, ys: torch.Tensor, states: Any, xs: Any) -> Tuple[torch.Tensor, Any]:
        logp, new_states = self.lm.batch_score(ys, states, xs)
        return logp + self.offset, new_states


def add_token_bonus(beam_search: Any, bonus: float) -> None:
    """Give every token emitted under LM fusion ``bonus`` (in the search's log domain);
    with ``bonus`` 0 the wrapper still serves the scores as floats (see above).

    And put the LM in eval mode: ESPnet's ``Speech2Text`` builds it in training mode
    (only the ASR model is put in eval mode), so its dropout made every LM score, and
    every decoding with an LM, random (the recipe's LM has dropout 0.2)."""
    if not getattr(beam_search, "use_lm", False):
        return
    beam_search.lm.eval()
    if beam_search.lm_weight == 0.0:
        if bonus != 0.0:
            raise ValueError("lm_token_bonus needs lm_weight != 0 (it is paid through the LM)")
        return
    beam_search.lm = TokenBonusLM(beam_search.lm, bonus / beam_search.lm_weight).eval()


def is_per_language(path: Any) -> bool:
    """Whether an LM path names one LM per language (it holds ``{lang}``)."""
    return path is not None and LANG_FIELD in str(path)


def language_path(path: Union[str, Path], lang: str) -> str:
    """``path`` with ``{lang}`` replaced by ``lang``."""
    return str(path).replace(LANG_FIELD, lang)


def check_lm_tokens(lm_train_config: Union[str, Path], asr_tokens: List[str]) -> None:
    """Refuse a fusion LM trained on other tokens than the ASR model's.

    The beam search adds the LM's score of output ``k`` to the expansion by token ``k``:
    an LM with another token list would score the wrong tokens without any error."""
    import yaml

    with open(lm_train_config, encoding="utf-8") as f:
        lm_tokens = (yaml.safe_load(f) or {}).get("token_list")
    if isinstance(lm_tokens, str):  # a token file, as given to lm_train
        with open(lm_tokens, encoding="utf-8") as f:
            lm_tokens = [line.rstrip("\n") for line in f]
    if list(lm_tokens or []) != list(asr_tokens):
        raise ValueError(
            f"{lm_train_config}: the LM's token list ({len(lm_tokens or [])} tokens) is not "
            f"the ASR model's ({len(asr_tokens)}); train the LM with the ASR model's "
            "tokens.txt (pathways.sh --use_lm true does)")


class PerLanguageLMs:
    """One fusion LM per language, each loaded the first time its language is decoded.

    Args:
        lm_train_config, lm_file: paths with ``{lang}`` (:data:`LANG_FIELD`).
        lm_weight, lm_token_bonus: as for a single LM, the same for every language.
        asr_tokens: the ASR model's token list (each LM must score the same tokens).
    """

    def __init__(self, lm_train_config: Union[str, Path], lm_file: Union[str, Path],
                 lm_weight: float, lm_token_bonus: float, device: str,
                 asr_tokens: List[str]) -> None:
        if not (is_per_language(lm_train_config) and is_per_language(lm_file)):
            raise ValueError(
                f"one LM per language needs {LANG_FIELD} in both the LM's config and model "
                f"paths, got {lm_train_config} and {lm_file}")
        if lm_weight == 0.0:
            raise ValueError("per-language LMs need lm_weight != 0")
        self.lm_train_config, self.lm_file = str(lm_train_config), str(lm_file)
        self.lm_weight, self.lm_token_bonus = float(lm_weight), float(lm_token_bonus)
        self.device, self.asr_tokens = device, list(asr_tokens)
        self._lms: Dict[str, TokenBonusLM] = {}

    def paths(self, lang: str) -> Tuple[str, str]:
        """Language ``lang``'s LM config and model file."""
        return language_path(self.lm_train_config, lang), language_path(self.lm_file, lang)

    def check(self, languages: List[str]) -> None:
        """Name the first missing LM file (and its language) before decoding starts."""
        for lang in languages:
            for kind, f in zip(("training config", "model file"), self.paths(lang)):
                if not Path(f).is_file():
                    raise FileNotFoundError(f"{f}: LM {kind} of language {lang!r} not found")

    def scorer(self, lang: str) -> "TokenBonusLM":
        """Language ``lang``'s LM as the search scores it (loaded once)."""
        if lang not in self._lms:
            from espnet2.tasks.lm import LMTask

            self.check([lang])
            config, model_file = self.paths(lang)
            check_lm_tokens(config, self.asr_tokens)
            lm, _ = LMTask.build_model_from_file(config, model_file, self.device)
            self._lms[lang] = TokenBonusLM(lm.lm, self.lm_token_bonus / self.lm_weight).eval()
        return self._lms[lang]

    def clear_caches(self) -> None:
        """Forget every loaded LM's cached prefixes."""
        for lm in self._lms.values():
            lm.clear_cache()

    def install(self, beam_search: Any, lang: Optional[str]) -> None:
        """Fuse language ``lang``'s LM into ``beam_search`` (ESPnet's, built without an LM:
        the attributes are the ones its constructor sets for one)."""
        if lang is None:
            beam_search.use_lm = False
            return
        beam_search.lm = self.scorer(lang)
        beam_search.lm_weight = self.lm_weight
        beam_search.sos = beam_search.vocab_size - 1
        beam_search.use_lm = True
