"""Decoding a list of utterances (a ``wav.scp``) into an output directory, losing nothing.

Shared by ``bin/recognize`` and ``bin/asr_pathways_inference``:

* every utterance is checked before it is decoded (file present, readable, not empty,
  mono, the model's sampling rate); a bad one is skipped with its id and the reason in
  ``<output_dir>/bad_utts`` and the run ends with :class:`BadUtterancesError` (non-zero
  exit), the way stage 2 treats data dirs; ``skip_bad=False`` stops at the first one;
* a very short utterance (< :data:`MIN_SECONDS`) is decoded with a warning: it gives the
  encoder too few frames to say anything;
* ESPnet's ``DatadirWriter`` writes into a hidden staging directory inside
  ``output_dir``; only a run that gets to the end moves the results into place, so a run
  that stops leaves any earlier complete ``1best_recog`` as it was.  The caller holds
  :func:`espnet_pathways.fileio.exclusive_lock` on ``output_dir``, so two runs never
  merge their lines into one directory.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from espnet_pathways.fileio import atomic_write_text, read_two_columns
from espnet_pathways.languages import UnknownLanguageError

PathLike = Union[str, Path]
#: Shorter utterances are decoded with a warning (a few encoder frames at most).
MIN_SECONDS = 0.2
BAD_UTTS = "bad_utts"


class BadUtteranceError(ValueError):
    """One utterance that cannot be decoded (its id and the reason in the message)."""


class BadUtterancesError(ValueError):
    """A run that skipped utterances: the results of the others are written."""


@dataclass
class DecodeSummary:
    """What a run decoded and skipped, and how long it took."""

    texts: Dict[str, str] = field(default_factory=dict)
    bad: List[Tuple[str, str]] = field(default_factory=list)
    audio_sec: float = 0.0
    elapsed: float = 0.0


def model_sampling_rate(s2t: Any) -> int:
    """The sampling rate of the model's frontend (``frontend_conf.fs``, default 16 kHz)."""
    fs = (getattr(s2t.asr_train_args, "frontend_conf", None) or {}).get("fs", 16000)
    if isinstance(fs, str):
        fs = int(float(fs.lower().replace("k", "")) * 1000) if "k" in fs.lower() else int(fs)
    return int(fs)


def check_speech(speech: np.ndarray, rate: int, fs: int, where: str) -> np.ndarray:
    """``speech`` if it is usable (else :class:`BadUtteranceError` naming ``where``);
    warns when it is shorter than :data:`MIN_SECONDS`."""
    if speech.ndim > 1:
        if speech.shape[1] != 1:
            raise BadUtteranceError(f"{where}: {speech.shape[1]} channels; give mono audio")
        speech = speech[:, 0]
    if rate != fs:
        raise BadUtteranceError(f"{where}: sampling rate {rate} Hz, the model needs {fs} Hz")
    if speech.size == 0:
        raise BadUtteranceError(f"{where}: empty audio (0 samples)")
    seconds = speech.size / rate
    if seconds < MIN_SECONDS:
        logging.warning("%s: only %.2f s of audio (< %.1f s): too short for the encoder, "
                        "the result is likely empty", where, seconds, MIN_SECONDS)
    return speech


def check_file(path: PathLike, where: str) -> None:
    """Name the two faults libsndfile reports as "System error." / "Format not
    recognised.": a missing file and an empty one."""
    if not Path(path).is_file():
        raise BadUtteranceError(f"{where}: file not found")
    if Path(path).stat().st_size == 0:
        raise BadUtteranceError(f"{where}: empty file (0 bytes)")


def read_audio_file(path: PathLike, fs: int, where: Optional[str] = None) -> np.ndarray:
    """A mono float32 signal from an audio file, checked by :func:`check_speech`."""
    import soundfile

    where = where or str(path)
    check_file(path, where)
    try:
        speech, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    except Exception as e:  # noqa: BLE001 - libsndfile raises several types
        raise BadUtteranceError(f"{where}: unreadable audio ({first_line(e)})") from None
    return check_speech(speech, rate, fs, where)


def first_line(e: BaseException) -> str:
    """The first line of an error message (libsndfile's without its "Error opening
    '<path>': " prefix: the caller names the file)."""
    line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return line.rsplit("': ", 1)[-1] if line.startswith("Error opening") else line


class UtteranceReader:
    """The utterances of a ``wav.scp`` (ESPnet's ``SoundScpReader``), each checked."""

    def __init__(self, wav_scp: PathLike, fs: int) -> None:
        from espnet2.fileio.sound_scp import SoundScpReader

        self.wav_scp = Path(wav_scp)
        self.paths = read_two_columns(self.wav_scp)  # errors name the file
        self.fs = fs
        self.reader = SoundScpReader(str(self.wav_scp), dtype="float32", always_2d=False)

    def keys(self) -> List[str]:
        return list(self.paths)

    def __getitem__(self, key: str) -> np.ndarray:
        path = self.paths[key]
        where = f"utterance {key} ({path})"
        is_pipe = path.rstrip().endswith("|")
        if not path:
            raise BadUtteranceError(f"utterance {key}: no audio path in {self.wav_scp}")
        if not is_pipe and ":" not in path:  # a pipe or an ark offset: ESPnet reads it
            check_file(path, where)
        try:
            rate, speech = self.reader[key]
        except Exception as e:  # noqa: BLE001 - libsndfile / pipes raise several types
            raise BadUtteranceError(f"{where}: unreadable audio ({first_line(e)})") from None
        return check_speech(np.asarray(speech), rate, self.fs, where)


def check_languages(s2t: Any, langs: Mapping[str, Optional[str]], source: str) -> None:
    """Every utterance's language must have a pathway (or be one of a dense model's);
    a pathway model needs a language for every utterance."""
    known = list(s2t.known_languages)
    unknown: Dict[str, str] = {}
    for key, lang in langs.items():
        if lang is None:
            if getattr(s2t, "masks", None) is not None:
                raise ValueError(f"utterance {key}: no language; this is a pathway model: "
                                 f"give --lang or --utt2lang (one of {' '.join(known)})")
        elif known and lang not in known:
            unknown.setdefault(lang, key)
    if unknown:
        lang, key = next(iter(unknown.items()))
        raise UnknownLanguageError(
            f"unknown language {lang!r} (utterance {key} in {source}); this model "
            f"decodes: {' '.join(known)}"
        )


def publish(staging: Path, output_dir: Path) -> None:
    """Move everything under ``staging`` into ``output_dir``: files with ``os.replace``,
    a directory (``1best_recog``) by swapping it with the old one as a whole."""
    for entry in sorted(staging.iterdir()):
        target = output_dir / entry.name
        if entry.is_dir() and target.is_dir():
            old = output_dir / f".old_{entry.name}_{os.getpid()}"
            target.rename(old)
            entry.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(entry, target)


def decode_utterances(
    s2t: Any,
    reader: Any,
    keys: Sequence[str],
    langs: Mapping[str, Optional[str]],
    output_dir: PathLike,
    nbest: int = 1,
    skip_bad: bool = True,
    progress: bool = False,
    write_rtf: bool = False,
) -> DecodeSummary:
    """Decode ``keys`` (language by language: a pathway switch rewrites the masked
    weights) into ESPnet's ``<output_dir>/<n>best_recog/{text,token,token_int,score}``.

    ``reader[key]`` gives the checked signal (:class:`UtteranceReader`).  Returns the
    summary; raises :class:`BadUtterancesError` at the end if utterances were skipped
    (their results are written, ``bad_utts`` lists them).
    """
    from tqdm import tqdm

    from espnet2.fileio.datadir_writer import DatadirWriter

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keys = sorted(keys, key=lambda k: (langs[k] or "", k))
    summary = DecodeSummary()
    staging = Path(tempfile.mkdtemp(prefix=".partial_", dir=output_dir))
    start = time.perf_counter()
    try:
        with DatadirWriter(str(staging)) as writer:
            for i, key in enumerate(tqdm(keys, desc="decode", unit="utt", disable=not progress,
                                         file=sys.stderr), 1):
                lang = langs[key]
                try:
                    speech = reader[key]
                    summary.audio_sec += speech.size / model_sampling_rate(s2t)
                    results = decode(s2t, speech, lang)
                except Exception as e:  # noqa: BLE001 - one utterance's fault, named below
                    if isinstance(e, UnknownLanguageError):
                        raise
                    abort = getattr(s2t, "abort_stream", None)
                    if abort is not None:  # a failure mid-stream must not leak into the next
                        abort()
                    reason = first_line(e) if isinstance(e, BadUtteranceError) else \
                        f"utterance {key} ({lang}): decoding failed ({type(e).__name__}: " \
                        f"{first_line(e)})"
                    if not skip_bad:
                        raise BadUtteranceError(
                            f"{reason}; stopped, nothing written to {output_dir} "
                            "(--skip_bad true skips bad utterances)") from None
                    logging.warning("skipping %s", reason)
                    summary.bad.append((key, reason))
                    continue
                for n, (text, token, token_int, hyp) in enumerate(results[:nbest], 1):
                    w = writer[f"{n}best_recog"]
                    w["token"][key] = " ".join(token)
                    w["token_int"][key] = " ".join(map(str, token_int))
                    w["score"][key] = str(float(hyp.score))
                    w["text"][key] = (text or "").strip()
                summary.texts[key] = (results[0][0] or "").strip() if results else ""
                if not progress and i % 50 == 0:
                    logging.info("decoded %d/%d utterances", i, len(keys))
        summary.elapsed = time.perf_counter() - start
        if write_rtf:  # not through the writer: its ids ("all") are not utterances
            rtf = summary.elapsed / max(summary.audio_sec, 1e-9)
            atomic_write_text(staging / "rtf", f"all {rtf:.4f} {summary.elapsed:.2f} "
                                               f"{summary.audio_sec:.2f}\n")
        if summary.bad:
            atomic_write_text(staging / BAD_UTTS, "".join(f"{k} {r}\n" for k, r in summary.bad))
        publish(staging, output_dir)
        if not summary.bad:
            (output_dir / BAD_UTTS).unlink(missing_ok=True)  # from an earlier run
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if summary.bad:
        key, reason = summary.bad[0]
        raise BadUtterancesError(
            f"{len(summary.bad)} of {len(keys)} utterances skipped (ids and reasons in "
            f"{output_dir / BAD_UTTS}), first: {reason}"
        )
    return summary


def decode(s2t: Any, speech: np.ndarray, lang: Optional[str]) -> List[Any]:
    """n-best results ``(text, token, token_int, hyp)`` of one utterance."""
    if s2t.streaming:
        hyps = s2t.decode_streaming_utterance(speech, lang=lang)
    else:
        hyps = s2t(speech, lang=lang)
    return s2t.hypotheses_to_results(hyps)
