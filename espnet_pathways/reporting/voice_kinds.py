"""Test error by kind of held-out voice: where a system's errors on unheard voices are.

Why: the embedded corpus's test voices are of very different kinds -- espeak-ng formant
synthesis, flite/festival voices built from one recorded person, the game's recorded
Dutch voice acting -- and one average per language hides that a model can recognise one
kind far better than another (the round-12 dense model's dev CER: English espeak-ng
voices 35.7, the English SLT voice 66.2; conf/tuning/dense_tuning.md round 14).  A
voice's kind is its ``spk2voice`` voice id up to the first ``.`` (``espeak.m3`` ->
``espeak``, ``human.rms`` -> ``human``, ``fillets_nl.0`` -> ``fillets_nl``), so any data
dir with a ``spk2voice`` gets the table; the CER is kaldialign's over ESPnet's character
tokens (:mod:`espnet_pathways.reporting.scoring`), the same units as the main table.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_pathways.fileio import read_two_columns
from espnet_pathways.reporting.scoring import score

__all__ = ["voice_kind", "utterance_kinds", "voice_kind_rows", "KIND_NAMES"]

#: How the embedded corpus's kinds read in RESULTS.md (others are shown as they are).
KIND_NAMES: Dict[str, str] = {
    "espeak": "espeak-ng variants",
    "human": "flite/festival (a recorded person)",
}


def voice_kind(voice_id: str) -> str:
    """The kind of a ``spk2voice`` voice id: the part before its first ``.``."""
    return voice_id.split(".", 1)[0]


def _kind_label(kind: str) -> str:
    if kind.startswith("fillets_"):
        return f"recorded voice acting ({kind})"
    return KIND_NAMES.get(kind, kind)


def _read(data_dir: Path, name: str) -> Dict[str, str]:
    path = data_dir / name
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (the voice-kind table needs text, utt2spk, "
                                f"utt2lang and spk2voice of the test data dir)")
    return read_two_columns(path)


def utterance_kinds(data_dir: Path) -> Dict[str, Tuple[str, str]]:
    """``uttid -> (language, kind)`` of a Kaldi data dir; an utterance whose speaker has
    no voice is an error naming it (the table would silently lose it)."""
    utt2spk, spk2voice = _read(data_dir, "utt2spk"), _read(data_dir, "spk2voice")
    utt2lang = _read(data_dir, "utt2lang")
    out: Dict[str, Tuple[str, str]] = {}
    for utt, spk in utt2spk.items():
        if spk not in spk2voice:
            raise ValueError(f"{data_dir / 'spk2voice'}: no voice for speaker {spk!r} "
                             f"(utterance {utt})")
        if utt not in utt2lang:
            raise ValueError(f"{data_dir / 'utt2lang'}: no language for utterance {utt}")
        out[utt] = (utt2lang[utt], voice_kind(spk2voice[spk]))
    return out


def voice_kind_rows(systems: Sequence[Tuple[str, str]], data_dir: Path, decode_dir: str,
                    langs: Sequence[str], precision: int = 1
                    ) -> Optional[Tuple[List[str], List[List[str]]]]:
    """(header, rows): one row per system and voice kind, a CER (utterances) per language.

    ``systems``: (name, exp dir); hypotheses are ``<exp dir>/<decode_dir>/test_<lang>/text``
    (what stage 12 scored).  A system without them is left out; None if none has them.
    A reference utterance without a hypothesis counts as all deletions, as in scoring.
    """
    refs = _read(data_dir, "text")
    kinds = utterance_kinds(data_dir)
    groups: Dict[Tuple[str, str], Dict[str, str]] = defaultdict(dict)
    for utt, ref in refs.items():
        lang, kind = kinds.get(utt, (None, None))
        if lang is None:
            raise ValueError(f"{data_dir / 'utt2spk'}: no speaker for utterance {utt}")
        if lang in langs:
            groups[(lang, kind)][utt] = ref
    all_kinds = sorted({k for (_, k) in groups}, key=lambda k: (k.startswith("fillets_"), k))
    rows: List[List[str]] = []
    for name, exp_dir in systems:
        hyps: Dict[str, Dict[str, str]] = {}
        for lang in langs:
            path = Path(exp_dir) / decode_dir / f"test_{lang}" / "text"
            if path.is_file():
                hyps[lang] = read_two_columns(path)
        if not hyps:
            continue
        for kind in all_kinds:
            row = [name, _kind_label(kind)]
            for lang in langs:
                ref = groups.get((lang, kind))
                if not ref or lang not in hyps:
                    row.append("n/a")
                    continue
                hyp = {u: t for u, t in hyps[lang].items() if u in ref}
                cer = score(ref, hyp, "char").counts().error_rate
                row.append(f"{cer:.{precision}f} ({len(ref)})")
            rows.append(row)
    if not rows:
        return None
    return ["System", "Voices", *[f"{lang} CER (utts)" for lang in langs]], rows
