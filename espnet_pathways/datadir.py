"""Check and format Kaldi-style data directories for the recipe (the "dump" stage).

A source directory holds ``wav.scp text utt2spk utt2lang`` (``spk2utt`` optional).  The
formatted copy adds what ESPnet's data loader and our samplers read:

* ``utt2lang_id`` -- the integer language id (``text_int``, data name ``lang``);
* ``category2utt`` -- language -> utterances, for ESPnet's category samplers;
* ``utt2num_samples`` -- from the audio headers;
* ``bad_utts`` -- every utterance left out, with the reason.

Policy (documented in docs/recipe.md):

* configuration errors stop the stage with a message naming the utterance and file: an
  utterance with no ``utt2lang`` entry, a language not in ``--languages``, a wrong
  sampling rate (resample in data preparation), a duplicated key;
* data faults are skipped with a warning naming the utterance and file, and listed with
  the reason in ``bad_utts``: audio file not found, unreadable audio, empty audio,
  more than one channel, no transcript, an empty transcript, a transcript with no word
  (punctuation or symbols only), no speaker.  If more than ``max_bad_fraction`` of a
  language is skipped, the stage stops: that is no longer noise.
"""
from __future__ import annotations

import logging
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_pathways.fileio import atomic_write_text, read_two_columns
from espnet_pathways.languages import UnknownLanguageError, check_languages

KALDI_FILES = ("wav.scp", "text", "utt2spk", "utt2lang")


class DataDirError(ValueError):
    """A data directory that cannot be used as it is."""


def read_kaldi_map(path: Path, allow_empty_value: bool = False) -> Dict[str, str]:
    """``key value...`` per line (:func:`espnet_pathways.fileio.read_two_columns`, i.e.
    ESPnet's reader); a duplicated key, or an empty value where one is needed, is an
    error naming the file."""
    out = read_two_columns(path)
    if not allow_empty_value:
        empty = [k for k, v in out.items() if not v.strip()]
        if empty:
            raise DataDirError(f"{path}: no value for key {empty[0]!r}")
    return out


def transcript_problem(text: str) -> Optional[str]:
    """Why a transcript cannot be trained on, or None: empty, or no letter or digit at
    all (``?! ... ,;``), which would put punctuation into the vocabulary and count it
    as words in scoring."""
    if not text.strip():
        return "empty transcript"
    if not any(unicodedata.category(c)[0] in "LMN" for c in text):
        return f"transcript has no words, only punctuation/symbols: {text.strip()!r}"
    return None


@dataclass
class DataDir:
    """The files of one Kaldi data directory, as dicts keyed by utterance id."""

    path: Path
    wav: Dict[str, str]
    text: Dict[str, str]
    utt2spk: Dict[str, str]
    utt2lang: Dict[str, str]
    bad: List[Tuple[str, str]] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path) -> "DataDir":
        path = Path(path)
        missing = [f for f in KALDI_FILES if not (path / f).exists()]
        if missing:
            raise DataDirError(f"data directory {path} lacks {', '.join(missing)}")
        return cls(
            path=path,
            wav=read_kaldi_map(path / "wav.scp", allow_empty_value=True),
            text=read_kaldi_map(path / "text", allow_empty_value=True),
            utt2spk=read_kaldi_map(path / "utt2spk"),
            utt2lang=read_kaldi_map(path / "utt2lang"),
        )


def soundfile_reason(e: BaseException) -> str:
    """libsndfile's reason without its "Error opening '<path>': " prefix (the caller
    names the file) and without its traceback lines."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    return line.rsplit("': ", 1)[-1] if line.startswith("Error opening") else line


def audio_problem(utt: str, wav: str, fs: int) -> Optional[str]:
    """Why the audio of ``utt`` cannot be used (a data fault: skipped), or None.  Reads
    the header only.  A sampling rate other than ``fs`` is a configuration error
    (:class:`DataDirError`): the data preparation did not resample."""
    import soundfile

    if wav.endswith("|"):
        return None  # a command pipe: ESPnet runs it at load time
    if not Path(wav).is_file():
        return f"audio file not found: {wav}"
    if Path(wav).stat().st_size == 0:
        return f"empty audio file (0 bytes): {wav}"
    try:
        info = soundfile.info(wav)
    except Exception as e:  # noqa: BLE001 - soundfile raises several types
        return f"unreadable audio {wav}: {soundfile_reason(e)}"
    if info.frames == 0:
        return f"empty audio (0 samples) {wav}"
    if info.channels != 1:
        return f"{info.channels} channels in {wav}; the model takes mono audio"
    if info.samplerate != fs:
        raise DataDirError(
            f"utterance {utt!r}: {wav} has sampling rate {info.samplerate}, expected {fs} "
            "(resample it in data preparation)"
        )
    return None


def check_datadir(
    src: DataDir, languages: Sequence[str], fs: int = 16000, max_bad_fraction: float = 0.05
) -> Tuple[List[str], Dict[str, int]]:
    """Return (good utterances, their sample counts); fill ``src.bad``."""
    import soundfile

    languages = check_languages(languages)
    good: List[str] = []
    num_samples: Dict[str, int] = {}
    per_lang_total: Dict[str, int] = defaultdict(int)
    per_lang_bad: Dict[str, int] = defaultdict(int)
    for utt in sorted(src.wav):
        lang = src.utt2lang.get(utt)
        if lang is None:
            raise DataDirError(
                f"utterance {utt!r} has no entry in {src.path / 'utt2lang'}"
            )
        if lang not in languages:
            raise UnknownLanguageError(
                f"utterance {utt!r} in {src.path / 'utt2lang'} has language {lang!r}, "
                f"which is not in --languages ({' '.join(languages)})"
            )
        per_lang_total[lang] += 1
        reason = None
        if utt not in src.text:
            reason = f"no transcript in {src.path / 'text'}"
        elif transcript_problem(src.text[utt]) is not None:
            reason = f"{transcript_problem(src.text[utt])} in {src.path / 'text'}"
        elif utt not in src.utt2spk:
            reason = f"no speaker in {src.path / 'utt2spk'}"
        elif not src.wav[utt]:
            reason = f"no audio path in {src.path / 'wav.scp'}"
        else:
            reason = audio_problem(utt, src.wav[utt], fs)
        if reason is not None:
            logging.warning("skipping utterance %s (%s): %s", utt, lang, reason)
            src.bad.append((utt, reason))
            per_lang_bad[lang] += 1
            continue
        wav = src.wav[utt]
        num_samples[utt] = 0 if wav.endswith("|") else soundfile.info(wav).frames
        good.append(utt)
    for lang, n_bad in per_lang_bad.items():
        if n_bad > max_bad_fraction * per_lang_total[lang]:
            utt, why = next((u, r) for u, r in src.bad if src.utt2lang[u] == lang)
            raise DataDirError(
                f"{n_bad} of {per_lang_total[lang]} utterances of language {lang!r} in "
                f"{src.path} are unusable (more than --max_bad_fraction "
                f"{max_bad_fraction}; see the warnings above), e.g. utterance {utt}: "
                f"{why}; fix the data"
            )
    if not good:
        raise DataDirError(f"no usable utterance in {src.path}")
    return good, num_samples


def _write(path: Path, lines: List[str]) -> None:
    atomic_write_text(path, "".join(f"{x}\n" for x in lines))


def write_datadir(
    src: DataDir, utts: Sequence[str], num_samples: Dict[str, int],
    languages: Sequence[str], dst: str | Path, text: Optional[Dict[str, str]] = None,
) -> Path:
    """Write the formatted copy of ``src`` restricted to ``utts`` into ``dst``."""
    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    text = text if text is not None else src.text
    utts = sorted(utts)
    _write(dst / "wav.scp", [f"{u} {src.wav[u]}" for u in utts])
    _write(dst / "text", [f"{u} {text[u]}" for u in utts])
    _write(dst / "utt2spk", [f"{u} {src.utt2spk[u]}" for u in utts])
    _write(dst / "utt2lang", [f"{u} {src.utt2lang[u]}" for u in utts])
    _write(dst / "utt2lang_id", [f"{u} {languages.index(src.utt2lang[u])}" for u in utts])
    _write(dst / "utt2num_samples", [f"{u} {num_samples[u]}" for u in utts])
    spk2utt: Dict[str, List[str]] = defaultdict(list)
    lang2utt: Dict[str, List[str]] = defaultdict(list)
    for u in utts:
        spk2utt[src.utt2spk[u]].append(u)
        lang2utt[src.utt2lang[u]].append(u)
    _write(dst / "spk2utt", [f"{s} {' '.join(us)}" for s, us in sorted(spk2utt.items())])
    _write(dst / "category2utt", [f"{lang} {' '.join(us)}" for lang, us in sorted(lang2utt.items())])
    bad = [(u, r) for u, r in src.bad if u not in set(utts)]
    _write(dst / "bad_utts", [f"{u} {r}" for u, r in bad])
    return dst


def languages_in(src: DataDir, utts: Sequence[str]) -> List[str]:
    return sorted({src.utt2lang[u] for u in utts})
