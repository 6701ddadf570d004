"""Leak check between a training data directory and held-out (dev/test) directories.

A recogniser is judged on speakers it has not heard and sentences it has not seen, so a
held-out set must share neither with training:

* **speakers**: no ``utt2spk`` speaker of a held-out dir is a training speaker;
* **voices**: when the dirs have ``spk2voice`` (speaker -> voice) or ``utt2voice``, no
  held-out voice is a training voice.  A synthetic corpus makes several speakers of one
  voice (its perturbations: ``en_flite.slt.0`` and ``en_flite.slt.3`` are both SLT), so
  without this map a voice could leak while every speaker id looks new;
* **sentences**: no held-out transcript (``text``; per language when ``utt2lang`` is
  there, since one spelling may be a sentence of two languages) is a training transcript.

Generic: any Kaldi-style recipe can run it (``python -m espnet_pathways.bin.check_splits``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from espnet_pathways.fileio import read_two_columns


class SplitLeakError(ValueError):
    """A held-out speaker, voice or sentence that is also in training (message names it)."""


@dataclass
class DataDirIndex:
    """What a data dir holds that a leak is about: speaker, voice and sentence -> the first
    utterance that has it (to name it in the message)."""

    path: Path
    speakers: Dict[str, str]
    voices: Optional[Dict[str, str]]  # None: the dir has no voice map
    voice_file: str
    sentences: Dict[Tuple[str, str], str]  # (language or "", normalised text) -> utt


def _voice_map(d: Path, utt2spk: Dict[str, str]) -> Tuple[Optional[Dict[str, str]], str]:
    """utt -> voice from ``utt2voice`` or ``spk2voice`` (None if neither exists)."""
    if (d / "utt2voice").is_file():
        return read_two_columns(d / "utt2voice", require_value=True), "utt2voice"
    if (d / "spk2voice").is_file():
        spk2voice = read_two_columns(d / "spk2voice", require_value=True)
        missing = sorted(s for s in set(utt2spk.values()) if s not in spk2voice)
        if missing:
            raise SplitLeakError(f"{d / 'spk2voice'}: no voice for speaker {missing[0]!r} "
                                 f"of {d / 'utt2spk'}")
        return {u: spk2voice[s] for u, s in utt2spk.items()}, "spk2voice"
    return None, ""


def index_data_dir(d: Path) -> DataDirIndex:
    """Read ``utt2spk``, ``text`` and (optional) ``utt2lang``/``spk2voice``/``utt2voice``."""
    d = Path(d)
    utt2spk = read_two_columns(d / "utt2spk", require_value=True)
    if not utt2spk:
        raise ValueError(f"{d / 'utt2spk'}: empty (no utterances to check)")
    text = read_two_columns(d / "text")
    utt2lang = read_two_columns(d / "utt2lang", require_value=True) \
        if (d / "utt2lang").is_file() else {}
    utt2voice, voice_file = _voice_map(d, utt2spk)
    speakers: Dict[str, str] = {}
    for utt in sorted(utt2spk):
        speakers.setdefault(utt2spk[utt], utt)
    voices = None
    if utt2voice is not None:
        voices = {}
        for utt in sorted(utt2voice):
            voices.setdefault(utt2voice[utt], utt)
    sentences: Dict[Tuple[str, str], str] = {}
    for utt in sorted(text):
        sentence = " ".join(text[utt].split())
        if sentence:
            sentences.setdefault((utt2lang.get(utt, ""), sentence), utt)
    return DataDirIndex(d, speakers, voices, voice_file, sentences)


def find_leak(train: DataDirIndex, held: DataDirIndex) -> Optional[str]:
    """The first leak of ``held`` into ``train`` as one line, or None."""
    for spk in sorted(held.speakers):
        if spk in train.speakers:
            return (f"speaker {spk!r} of {held.path / 'utt2spk'} (utterance "
                    f"{held.speakers[spk]}) is also a training speaker in "
                    f"{train.path / 'utt2spk'} (utterance {train.speakers[spk]})")
    if held.voices is not None and train.voices is not None:
        for voice in sorted(held.voices):
            if voice in train.voices:
                return (f"voice {voice!r} of {held.path / held.voice_file} (utterance "
                        f"{held.voices[voice]}) is also a training voice in "
                        f"{train.path / train.voice_file} (utterance {train.voices[voice]})")
    for key in sorted(held.sentences):
        if key in train.sentences:
            lang = f" ({key[0]})" if key[0] else ""
            return (f"sentence{lang} {key[1]!r} of {held.path / 'text'} (utterance "
                    f"{held.sentences[key]}) is also in {train.path / 'text'} "
                    f"(utterance {train.sentences[key]})")
    return None


def check_splits(train: Path, held_out: Sequence[Path]) -> Dict[str, Dict[str, int]]:
    """Raise :class:`SplitLeakError` naming the first leak; else return, per dir, the
    counts of speakers, voices (when known) and sentences checked."""
    tr = index_data_dir(Path(train))
    counts = {str(tr.path): _counts(tr)}
    for d in held_out:
        held = index_data_dir(Path(d))
        leak = find_leak(tr, held)
        if leak:
            raise SplitLeakError(leak)
        counts[str(held.path)] = _counts(held)
    return counts


def _counts(ix: DataDirIndex) -> Dict[str, int]:
    out = {"speakers": len(ix.speakers), "sentences": len(ix.sentences)}
    if ix.voices is not None:
        out["voices"] = len(ix.voices)
    return out
