#!/usr/bin/env python3
"""Multilingual LibriSpeech (openslr.org/94, flac version) -> Kaldi data dirs.

Reads, per language ``<lang>`` (``english``, ``french``, ... or its code ``en``, ``fr``):

    <mls_root>/mls_<lang>/{train,dev,test}/transcripts.txt      <uttid>\\t<text>
    <mls_root>/mls_<lang>/{train,dev,test}/audio/<spk>/<book>/<spk>_<book>_<utt>.flac
    <mls_root>/mls_<lang>/{train,dev,test}/segments.txt         (optional; durations)

and writes ``<data_dir>/{train,dev,test}/{wav.scp,text,utt2spk,spk2utt,utt2lang}`` with
all languages pooled, plus ``<data_dir>/local/corpus_summary.tsv`` (read by RESULTS.md).

* Utterance ids are ``<code>_<mls id>`` and speakers ``<code>_<spk>``, so that ids are
  unique across languages and every utterance id starts with its speaker id (Kaldi's
  sorting rule).  ``utt2lang`` holds the ISO code (en fr it nl de es pt pl).
* ``wav.scp`` holds plain absolute flac paths: ESPnet's ``sound`` loader (soundfile)
  reads flac directly, no sox pipe needed.
* Text is normalised with :func:`espnet_pathways.text.normalize` (en fr it nl; other MLS
  languages get the same generic rules, with a warning).  Utterances whose text is empty
  after normalisation are left out and counted.
* ``--hours_cap "it=10 nl=20"`` keeps at most that many hours of a language's *train*
  split (dev/test are never capped), deterministically: ``--cap_by speaker`` (default)
  takes one utterance per speaker in turn (speakers and their utterances in id order) so
  the reduced set keeps all speakers; ``--cap_by utt`` takes utterances in id order.
  Durations come from ``segments.txt`` (end - start) when it is there, otherwise from
  the flac headers.

A missing language dir, split, ``transcripts.txt``, ``audio/`` dir or audio file is an
error that names exactly what is missing (all problems are listed before exiting).
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

#: MLS language directory names (mls_<name>) and the codes used in utt2lang.
MLS_LANGUAGES = {
    "english": "en", "german": "de", "dutch": "nl", "french": "fr",
    "spanish": "es", "italian": "it", "portuguese": "pt", "polish": "pl",
}
CODE_TO_NAME = {c: n for n, c in MLS_LANGUAGES.items()}
SPLITS = ("train", "dev", "test")
MAX_LISTED = 10

log = logging.getLogger("prepare_mls")


class MLSLayoutError(RuntimeError):
    """The MLS directory does not have the expected layout (message lists what is missing)."""


def language_name(lang: str) -> str:
    """``english`` or ``en`` -> ``english``; anything else is an error listing the choices."""
    key = lang.strip().lower()
    if key in MLS_LANGUAGES:
        return key
    if key in CODE_TO_NAME:
        return CODE_TO_NAME[key]
    choices = ", ".join(f"{n} ({c})" for n, c in MLS_LANGUAGES.items())
    raise ValueError(f"unknown MLS language {lang!r}; MLS has: {choices}")


def parse_caps(spec: str) -> Dict[str, float]:
    """``"it=10 nl=20"`` (codes or names, spaces or commas) -> ``{"it": 10.0, "nl": 20.0}``."""
    caps: Dict[str, float] = {}
    for item in spec.replace(",", " ").split():
        lang, sep, hours = item.partition("=")
        if not sep:
            raise ValueError(f"--hours_cap: expected LANG=HOURS, got {item!r}")
        try:
            h = float(hours)
        except ValueError:
            raise ValueError(f"--hours_cap: {hours!r} is not a number of hours ({item!r})") from None
        if h <= 0:
            raise ValueError(f"--hours_cap: hours must be positive ({item!r})")
        caps[MLS_LANGUAGES[language_name(lang)]] = h
    return caps


def mls_audio_path(split_dir: Path, mls_id: str, ext: str = "flac") -> Path:
    """``10214_10108_000000`` -> ``<split_dir>/audio/10214/10108/10214_10108_000000.flac``."""
    parts = mls_id.split("_")
    if len(parts) != 3:
        raise ValueError(f"not an MLS utterance id (<spk>_<book>_<utt>): {mls_id!r}")
    spk, book, _ = parts
    return split_dir / "audio" / spk / book / f"{mls_id}.{ext}"


def read_transcripts(path: Path) -> List[Tuple[str, str]]:
    """``<uttid>\\t<text>`` lines (a space instead of the tab is accepted)."""
    out: List[Tuple[str, str]] = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if "\t" in line:
                utt, text = line.split("\t", 1)
            else:
                utt, _, text = line.partition(" ")
            if not utt.strip():
                raise MLSLayoutError(f"{path}:{n}: no utterance id in {line!r}")
            out.append((utt.strip(), text.strip()))
    return out


def read_segment_durations(path: Path) -> Dict[str, float]:
    """``segments.txt``: ``<uttid> <url> <start> <end>`` -> duration in seconds."""
    out: Dict[str, float] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 4:
                try:
                    out[parts[0]] = float(parts[3]) - float(parts[2])
                except ValueError:
                    continue
    return out


def check_layout(root: Path, names: Sequence[str], splits: Sequence[str]) -> List[str]:
    """Every problem with the directory layout, one exact message each (empty = fine)."""
    problems: List[str] = []
    if not root.is_dir():
        return [f"MLS root {root} does not exist (give --mls_root <dir holding mls_<language>/>)"]
    for name in names:
        lang_dir = root / f"mls_{name}"
        if not lang_dir.is_dir():
            hint = ""
            if (root / f"mls_{name}_opus").is_dir():
                hint = (f" (found {root / f'mls_{name}_opus'}: the opus version; this recipe "
                        f"reads the flac version, mls_{name}.tar.gz from openslr.org/94)")
            elif (root / f"mls_{name}.tar.gz").exists():
                hint = f" (found {root / f'mls_{name}.tar.gz'}: unpack it in {root})"
            problems.append(f"language {name}: missing directory {lang_dir}{hint}")
            continue
        for split in splits:
            split_dir = lang_dir / split
            if not split_dir.is_dir():
                problems.append(f"language {name}: missing split directory {split_dir}")
                continue
            if not (split_dir / "transcripts.txt").is_file():
                problems.append(f"language {name}, split {split}: missing file {split_dir / 'transcripts.txt'}")
            if not (split_dir / "audio").is_dir():
                problems.append(f"language {name}, split {split}: missing directory {split_dir / 'audio'}")
    return problems


def _durations(split_dir: Path, utts: Sequence[Tuple[str, str]]) -> Dict[str, float]:
    seg = split_dir / "segments.txt"
    durs = read_segment_durations(seg) if seg.is_file() else {}
    missing = [u for u, _ in utts if u not in durs]
    if missing:
        import soundfile

        for u in missing:
            durs[u] = soundfile.info(str(mls_audio_path(split_dir, u))).duration
    return durs


def cap_utterances(utts: Sequence[str], durations: Dict[str, float], hours: float,
                   by: str = "speaker") -> List[str]:
    """Deterministic subset of ``utts`` (MLS ids) of at most ``hours`` hours.

    ``by="utt"``: in id order.  ``by="speaker"``: round robin over speakers (sorted), each
    speaker's utterances in id order, so every speaker keeps some data.  Stops at the first
    utterance that does not fit (the result never exceeds the cap).
    """
    budget = hours * 3600.0
    if by == "utt":
        order = sorted(utts)
    elif by == "speaker":
        per_spk: Dict[str, List[str]] = defaultdict(list)
        for u in sorted(utts):
            per_spk[u.split("_")[0]].append(u)
        queues = [per_spk[s] for s in sorted(per_spk)]
        order = []
        for i in range(max((len(q) for q in queues), default=0)):
            order.extend(q[i] for q in queues if i < len(q))
    else:
        raise ValueError(f"--cap_by must be speaker or utt, got {by!r}")
    kept: List[str] = []
    total = 0.0
    for u in order:
        d = durations[u]
        if total + d > budget:
            break
        kept.append(u)
        total += d
    return kept


def _normalizer(code: str):
    from espnet_pathways.text import SUPPORTED_LANGS, normalize

    if code in SUPPORTED_LANGS:
        return lambda t: normalize(t, code)
    log.warning("espnet_pathways.text.normalize has no rules for %r (it has %s); using the "
                "generic rules (NFC, lowercase, word-internal apostrophes)", code,
                " ".join(SUPPORTED_LANGS))
    return lambda t: normalize(t, "en")


def _write(path: Path, lines: Sequence[str]) -> None:
    from espnet_pathways.fileio import atomic_write_text

    atomic_write_text(path, "".join(f"{x}\n" for x in lines))


def prepare(mls_root: Path, langs: Sequence[str], data_dir: Path, caps: Dict[str, float],
            cap_by: str = "speaker", check_audio: bool = True,
            splits: Sequence[str] = SPLITS) -> List[List[str]]:
    """Write the Kaldi dirs; returns the summary rows (split, lang, utts, spks, hours)."""
    names = [language_name(x) for x in langs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"languages listed twice: {dup}")
    unknown_caps = sorted(set(caps) - {MLS_LANGUAGES[n] for n in names})
    if unknown_caps:
        raise ValueError(f"--hours_cap names languages not in --langs: {unknown_caps}")
    problems = check_layout(mls_root, names, splits)
    if problems:
        raise MLSLayoutError("the MLS directory is incomplete:\n  " + "\n  ".join(problems))

    summary: List[List[str]] = []
    for split in splits:
        wav, text, utt2spk, utt2lang = {}, {}, {}, {}
        for name in names:
            code = MLS_LANGUAGES[name]
            split_dir = mls_root / f"mls_{name}" / split
            entries = read_transcripts(split_dir / "transcripts.txt")
            if not entries:
                raise MLSLayoutError(f"language {name}, split {split}: "
                                     f"{split_dir / 'transcripts.txt'} has no utterances")
            seen = set()
            for u, _ in entries:
                if u in seen:
                    raise MLSLayoutError(f"{split_dir / 'transcripts.txt'}: utterance {u} appears twice")
                seen.add(u)
            if check_audio:
                absent = [str(mls_audio_path(split_dir, u)) for u, _ in entries
                          if not mls_audio_path(split_dir, u).is_file()]
                if absent:
                    shown = "\n  ".join(absent[:MAX_LISTED])
                    more = f"\n  ... and {len(absent) - MAX_LISTED} more" if len(absent) > MAX_LISTED else ""
                    raise MLSLayoutError(
                        f"language {name}, split {split}: {len(absent)} of {len(entries)} "
                        f"audio files listed in transcripts.txt are missing:\n  {shown}{more}")
            durs: Optional[Dict[str, float]] = None
            if split == "train" and code in caps:
                durs = _durations(split_dir, entries)
                keep = set(cap_utterances([u for u, _ in entries], durs, caps[code], cap_by))
                before = sum(durs.values()) / 3600
                entries = [(u, t) for u, t in entries if u in keep]
                log.info("%s train: capped to %.2f h (by %s): %d utterances, %.2f h of %.2f h",
                         code, caps[code], cap_by, len(entries),
                         sum(durs[u] for u in keep) / 3600, before)
            elif (split_dir / "segments.txt").is_file():
                durs = read_segment_durations(split_dir / "segments.txt")
            norm = _normalizer(code)
            empty = 0
            spks = set()
            for u, t in entries:
                words = norm(t)
                if not words:
                    empty += 1
                    continue
                spk = f"{code}_{u.split('_')[0]}"
                uid = f"{code}_{u}"
                wav[uid] = str(mls_audio_path(split_dir, u).resolve())
                text[uid] = words
                utt2spk[uid] = spk
                utt2lang[uid] = code
                spks.add(spk)
            if empty:
                log.warning("%s %s: %d utterance(s) with an empty transcript after "
                            "normalisation left out", code, split, empty)
            n = len(entries) - empty
            hours = "n/a"
            if durs is not None and all(u in durs for u, _ in entries):
                hours = f"{sum(durs[u] for u, _ in entries) / 3600:.3f}"
            summary.append([split, code, str(n), str(len(spks)), hours])
        out = data_dir / split
        keys = sorted(wav)
        _write(out / "wav.scp", [f"{k} {wav[k]}" for k in keys])
        _write(out / "text", [f"{k} {text[k]}" for k in keys])
        _write(out / "utt2spk", [f"{k} {utt2spk[k]}" for k in keys])
        _write(out / "utt2lang", [f"{k} {utt2lang[k]}" for k in keys])
        spk2utt: Dict[str, List[str]] = defaultdict(list)
        for k in keys:
            spk2utt[utt2spk[k]].append(k)
        _write(out / "spk2utt", [f"{s} {' '.join(spk2utt[s])}" for s in sorted(spk2utt)])
        log.info("wrote %s: %d utterances, %d speakers", out, len(keys), len(spk2utt))
    _write(data_dir / "local" / "corpus_summary.tsv",
           ["\t".join(r) for r in [["split", "lang", "utterances", "speakers", "hours"], *summary]])
    return summary


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mls_root", required=True, type=Path, help="directory holding mls_<language>/")
    p.add_argument("--langs", default="english french italian dutch",
                   help="MLS languages (names or codes, space or comma separated)")
    p.add_argument("--hours_cap", default="", help='train-set caps, e.g. "it=10 nl=20"')
    p.add_argument("--cap_by", default="speaker", choices=["speaker", "utt"])
    p.add_argument("--data_dir", default=Path("data"), type=Path)
    p.add_argument("--check_audio", default="true", choices=["true", "false"],
                   help="check that every listed flac exists (one stat per utterance)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s (prepare_mls) %(levelname)s: %(message)s")
    args = get_parser().parse_args(argv)
    try:
        langs = args.langs.replace(",", " ").split()
        if not langs:
            raise ValueError("--langs is empty")
        summary = prepare(args.mls_root, langs, args.data_dir, parse_caps(args.hours_cap),
                          args.cap_by, args.check_audio == "true")
    except (MLSLayoutError, ValueError, OSError) as e:
        log.error("%s", e)
        return 1
    log.info("summary (split lang utts spks hours):\n%s", "\n".join("\t".join(r) for r in summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
