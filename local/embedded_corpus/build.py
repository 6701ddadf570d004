"""Build the embedded corpus into Kaldi-style data directories.

Pipeline (see docs/corpus.md): parse Fish Fillets NG dialogue -> filter and
normalise -> split by dialogue key (same split for every language; the lines of the
held-out characters go to their split) -> remove cross-split duplicate sentences ->
subsample Italian train (low resource) -> give each line speakers of its split's voices
(voices.py: no voice is in two splits) -> synthesise and perturb (en/fr/it, and nl/cs
lines no recording of the split's characters covers) or convert recordings (nl/cs) in
parallel -> drop too short/long audio -> write ``<out_dir>/{train,dev,test}`` and a summary.

Everything is deterministic for a given seed: all lists are sorted and every
random choice uses an RNG seeded from a hash of (seed, key, lang).
"""

from __future__ import annotations

import json
import logging
import random
import re
import tempfile
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from embedded_corpus import fillets, tts, voices
from embedded_corpus.voices import RECORDED_LANGS, SPLITS, Speaker, stable_seed
from espnet_pathways.fileio import atomic_write_text
from espnet_pathways.text import SUPPORTED_LANGS, normalize, skip_reason, tts_text

DEFAULT_LANGS = ("en", "fr", "it", "nl")
MAX_FAIL_RATE = 0.05
#: Bump when voices or perturbations change: cached audio lives under this name.
AUDIO_VERSION = "v2"
_FESTIVAL_CHUNK = 40
_CHUNK = 16


@dataclass
class Options:
    """Builder options; the CLI exposes each field as ``--<name>``."""

    langs: List[str] = field(default_factory=lambda: list(DEFAULT_LANGS))
    max_lines_per_lang: Optional[int] = None  # per language AND split
    voices_per_line: int = 2
    extra_train_voices: int = 1
    recorded_tts_fraction: float = 1.0
    max_duration: float = 8.0
    min_duration: float = 0.5
    seed: int = 0
    nj: int = 2
    dev_fraction: float = 0.02
    test_fraction: float = 0.04
    low_resource_lang: Optional[str] = "it"
    low_resource_fraction: float = 0.25
    audio_dir: str = "downloads/embedded_corpus"
    out_dir: str = "data"
    fillets_root: str = str(fillets.FILLETS_ROOT)


@dataclass(frozen=True)
class Line:
    """A usable dialogue line of one language, assigned to a split."""

    key: fillets.Key
    lang: str
    split: str
    text: str  # normalised transcript
    tts: str  # text given to the TTS engine


@dataclass(frozen=True)
class Job:
    """One utterance to produce: a line spoken by one speaker."""

    utt: str
    line: Line
    speaker: Speaker
    wav: Path
    source: Optional[Path] = None  # recorded audio (nl, cs)


class CorpusError(RuntimeError):
    """Fatal build error (bad option, missing data, too many failures)."""


def _unit(*parts: object) -> float:
    """Deterministic pseudo-random number in [0, 1) for the given parts."""
    return stable_seed(*parts) / 2**64


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", s)


def split_of(key: fillets.Key, seed: int, dev_fraction: float, test_fraction: float) -> str:
    """Split of a dialogue key, independent of language so translations of a sentence
    always land in the same split: a held-out character's line goes to that
    character's split (so its recordings can be used), any other line to dev with
    probability ``dev_fraction``, to test with ``test_fraction``, else to train."""
    held_out = voices.character_split(fillets.character(key[1]))
    if held_out != "train":
        return held_out
    u = _unit(seed, "split", *key)
    return "dev" if u < dev_fraction else "test" if u < dev_fraction + test_fraction else "train"


def select_lines(dialogs: Dict[fillets.Key, fillets.Dialog], lang: str, opts: Options,
                 skipped: Counter) -> List[Line]:
    """Filter, normalise, split, de-duplicate and subsample one language's lines."""
    lines = []
    for key in sorted(dialogs):
        raw = dialogs[key].text
        if not raw.strip():
            skipped[(lang, "no_text")] += 1
            continue
        reason = skip_reason(raw)
        if reason:
            skipped[(lang, reason)] += 1
            continue
        text = normalize(raw, lang)
        if not text:
            logging.warning("%s %s/%s: transcript empty after normalisation (%r), skipped",
                            lang, *key, raw)
            skipped[(lang, "empty_text")] += 1
            continue
        split = split_of(key, opts.seed, opts.dev_fraction, opts.test_fraction)
        lines.append(Line(key, lang, split, text, tts_text(raw)))
    # No sentence in two splits: test wins over dev, dev over train.
    seen: Dict[str, set] = {s: {ln.text for ln in lines if ln.split == s} for s in SPLITS}
    blocked = {"train": seen["dev"] | seen["test"], "dev": seen["test"], "test": set()}
    kept = [ln for ln in lines if ln.text not in blocked[ln.split]]
    skipped[(lang, "cross_split_duplicate")] += len(lines) - len(kept)
    if lang == opts.low_resource_lang:
        before = len(kept)
        kept = [ln for ln in kept if ln.split != "train"
                or _unit(opts.seed, "lowres", *ln.key) < opts.low_resource_fraction]
        skipped[(lang, "low_resource_subsampling")] += before - len(kept)
    if opts.max_lines_per_lang is not None:
        capped = []
        for s in SPLITS:
            part = sorted((ln for ln in kept if ln.split == s),
                          key=lambda ln: _unit(opts.seed, "cap", lang, *ln.key))
            capped += part[: opts.max_lines_per_lang]
        kept = sorted(capped, key=lambda ln: ln.key)
    return kept


def _speakers_of(ln: Line, opts: Options, pools: Dict[Tuple[str, str], List[Speaker]],
                 fillets_root: Path) -> List[Tuple[Speaker, Optional[Path]]]:
    """(speaker, recording or None) for one line.

    en/fr/it: ``voices_per_line`` synthetic speakers of the line's split, plus
    ``extra_train_voices`` in train (more voices per training sentence generalise better
    to unheard voices; held-out splits need no more).  nl/cs: the
    recording when its character belongs to the line's split (plus, for a fraction
    ``recorded_tts_fraction`` of train lines, one synthetic train speaker for voice
    diversity); otherwise (a fish line in dev/test, or no recording) one synthetic
    speaker of the line's split, so no recorded train voice is heard in dev/test."""
    rng = random.Random(stable_seed(opts.seed, ln.lang, *ln.key))
    pool = pools[(ln.lang, ln.split)]
    if ln.lang not in RECORDED_LANGS:
        n = opts.voices_per_line + (opts.extra_train_voices if ln.split == "train" else 0)
        return [(s, None) for s in voices.pick_speakers(pool, n, rng)]
    src = fillets.recording(ln.key, ln.lang, fillets_root)
    spk = voices.recorded_speaker(ln.lang, fillets.character(ln.key[1]))
    if not (src.exists() and spk.split == ln.split):
        return [(s, None) for s in voices.pick_speakers(pool, 1, rng)]
    out: List[Tuple[Speaker, Optional[Path]]] = [(spk, src)]
    if ln.split == "train" and rng.random() < opts.recorded_tts_fraction:
        out += [(s, None) for s in voices.pick_speakers(pool, 1, rng)]
    return out


def make_jobs(lines: Iterable[Line], opts: Options, audio_root: Path,
              fillets_root: Path) -> List[Job]:
    """One job per (line, speaker); see :func:`_speakers_of`."""
    jobs = []
    pools = {(lang, split): voices.speaker_pool(lang, split, opts.seed)
             for lang in opts.langs for split in SPLITS}
    for ln in lines:
        level, did = _safe(ln.key[0]), _safe(ln.key[1])
        for spk, src in _speakers_of(ln, opts, pools, fillets_root):
            utt = f"{spk.spk}-{level}-{did}"
            wav = audio_root / ln.lang / spk.spk / f"{utt}.wav"
            jobs.append(Job(utt, ln, spk, wav, src))
    return jobs


def _readable(path: Path) -> Optional[float]:
    """Duration of an existing readable wav (resume), else None."""
    try:
        return tts.wav_duration(path) if path.exists() else None
    except Exception:
        return None


def run_chunk(jobs: List[Job], seed: int) -> List[Tuple[Job, Optional[float], str]]:
    """Produce the audio of jobs sharing one engine voice; returns (job, duration, error)."""
    results: List[Tuple[Job, Optional[float], str]] = []
    todo = []
    for job in jobs:
        dur = _readable(job.wav)
        if dur is None:
            todo.append(job)
        else:
            results.append((job, dur, ""))
    if not todo:
        return results
    with tempfile.TemporaryDirectory(prefix="corpus_raw_") as tmp:
        raws = {job.utt: Path(tmp) / f"{i}.wav" for i, job in enumerate(todo)}
        if todo[0].speaker.engine == "festival":
            tts.synth_festival(todo[0].speaker.voice, [(j.line.tts, raws[j.utt]) for j in todo])
        for job in todo:
            try:
                raw = job.source or raws[job.utt]
                if job.speaker.engine in ("espeak", "flite"):
                    tts.synth_one(job.speaker, job.line.tts, raw)
                if not raw.exists():
                    raise RuntimeError(f"{job.speaker.engine} produced no audio")
                tts.postprocess(raw, job.wav, job.speaker, job.utt, seed)
                results.append((job, tts.wav_duration(job.wav), ""))
            except Exception as e:  # one bad utterance must not stop the build
                logging.warning("%s: failed to make %s from %r: %s", job.utt, job.wav,
                                str(job.source or job.line.tts), e)
                results.append((job, None, str(e)))
    return results


def _chunks(jobs: List[Job]) -> List[List[Job]]:
    """Group jobs by engine voice (a festival batch needs one voice) into chunks."""
    by_voice: Dict[Tuple[str, str, str], List[Job]] = defaultdict(list)
    for job in jobs:
        by_voice[(job.line.lang, job.speaker.engine, job.speaker.voice)].append(job)
    out = []
    for k in sorted(by_voice):
        group = sorted(by_voice[k], key=lambda j: j.utt)
        size = _FESTIVAL_CHUNK if k[1] == "festival" else _CHUNK
        out += [group[i:i + size] for i in range(0, len(group), size)]
    # Slow festival chunks first so they overlap with the many fast ones.
    return sorted(out, key=lambda c: c[0].speaker.engine != "festival")


def _write(path: Path, rows: Iterable[str]) -> None:
    """Atomic text write (:func:`espnet_pathways.fileio.atomic_write_text`), one row per line."""
    atomic_write_text(path, "".join(r + "\n" for r in rows))


def write_kaldi_dir(d: Path, items: List[Tuple[Job, float]]) -> None:
    """Write wav.scp, text, utt2spk, spk2utt, utt2lang, utt2dur and spk2voice (the voice
    a speaker is a perturbation of, read by ``espnet_pathways.bin.check_splits``),
    sorted by utt id."""
    items = sorted(items, key=lambda x: x[0].utt)
    _write(d / "wav.scp", (f"{j.utt} {j.wav.resolve()}" for j, _ in items))
    _write(d / "text", (f"{j.utt} {j.line.text}" for j, _ in items))
    _write(d / "utt2spk", (f"{j.utt} {j.speaker.spk}" for j, _ in items))
    _write(d / "utt2lang", (f"{j.utt} {j.line.lang}" for j, _ in items))
    _write(d / "utt2dur", (f"{j.utt} {dur:.3f}" for j, dur in items))
    spk2utt: Dict[str, List[str]] = defaultdict(list)
    spk2voice: Dict[str, str] = {}
    for j, _ in items:
        spk2utt[j.speaker.spk].append(j.utt)
        spk2voice[j.speaker.spk] = j.speaker.voice_id
    _write(d / "spk2utt", (f"{s} {' '.join(u)}" for s, u in sorted(spk2utt.items())))
    _write(d / "spk2voice", (f"{s} {v}" for s, v in sorted(spk2voice.items())))


def _table(header: List[str], rows: List[List[object]]) -> List[str]:
    return ["\t".join(header)] + ["\t".join(map(str, r)) for r in rows]


def validate(opts: Options) -> None:
    """Reject bad options early with a message saying what is allowed."""
    bad = [lang for lang in opts.langs if lang not in SUPPORTED_LANGS]
    if bad or not opts.langs:
        raise CorpusError(f"unknown language(s) {bad} in --langs; supported: "
                          f"{','.join(SUPPORTED_LANGS)}")
    if not (0 <= opts.dev_fraction and 0 <= opts.test_fraction
            and opts.dev_fraction + opts.test_fraction < 1):
        raise CorpusError("--dev_fraction and --test_fraction must be >= 0 and sum to < 1")
    if not 0 < opts.low_resource_fraction <= 1:
        raise CorpusError("--low_resource_fraction must be in (0, 1]")
    if not 0 <= opts.recorded_tts_fraction <= 1:
        raise CorpusError("--recorded_tts_fraction must be in [0, 1]")
    if opts.voices_per_line < 1 or opts.nj < 1:
        raise CorpusError("--voices_per_line and --nj must be >= 1")
    if opts.extra_train_voices < 0:
        raise CorpusError("--extra_train_voices must be >= 0")
    if opts.max_lines_per_lang is not None and opts.max_lines_per_lang < 1:
        raise CorpusError("--max_lines_per_lang must be >= 1 (or none for all)")
    if opts.min_duration >= opts.max_duration:
        raise CorpusError("--min_duration must be < --max_duration")
    root = Path(opts.fillets_root)
    for lang in opts.langs:
        if lang in RECORDED_LANGS and not any((root / "sound").glob(f"*/{lang}/*.ogg")):
            raise CorpusError(f"{lang}: no recordings {root}/sound/<level>/{lang}/*.ogg "
                              f"(install the Debian package fillets-ng-data-{lang})")


def build(opts: Options) -> List[List[object]]:
    """Build the corpus; returns the summary rows
    (split, lang, utterances, speakers, voices, hours)."""
    validate(opts)
    root, out_dir = Path(opts.fillets_root), Path(opts.out_dir)
    audio_root = Path(opts.audio_dir).resolve() / f"{AUDIO_VERSION}_seed{opts.seed}"
    skipped: Counter = Counter()
    lines: List[Line] = []
    for lang in opts.langs:
        try:
            dialogs = fillets.load_language(lang, root)
        except FileNotFoundError as e:
            raise CorpusError(f"{lang}: {e}") from e
        lines += select_lines(dialogs, lang, opts, skipped)
    jobs = make_jobs(lines, opts, audio_root, root)
    logging.info("%d lines, %d utterances to produce with nj=%d", len(lines), len(jobs), opts.nj)

    results = []
    with ThreadPoolExecutor(max_workers=opts.nj) as ex:
        for part in ex.map(lambda c: run_chunk(c, opts.seed), _chunks(jobs)):
            results += part

    attempted, failed = Counter(), Counter()
    kept: Dict[str, List[Tuple[Job, float]]] = defaultdict(list)
    for job, dur, err in results:
        lang = job.line.lang
        attempted[lang] += 1
        if dur is None:
            failed[lang] += 1
            skipped[(lang, "audio_failed")] += 1
        elif dur > opts.max_duration:
            skipped[(lang, "too_long")] += 1
        elif dur < opts.min_duration:
            skipped[(lang, "too_short")] += 1
        else:
            kept[job.line.split].append((job, dur))
    for lang in sorted(attempted):
        if failed[lang] > MAX_FAIL_RATE * attempted[lang]:
            raise CorpusError(f"{lang}: {failed[lang]} of {attempted[lang]} utterances failed "
                              f"(> {MAX_FAIL_RATE:.0%}); see the warnings above")

    rows: List[List[object]] = []
    for split in SPLITS:
        write_kaldi_dir(out_dir / split, kept[split])
        for lang in opts.langs:
            items = [(j, d) for j, d in kept[split] if j.line.lang == lang]
            rows.append([split, lang, len(items), len({j.speaker.spk for j, _ in items}),
                         len({j.speaker.voice_id for j, _ in items}),
                         f"{sum(d for _, d in items) / 3600:.3f}"])
    summary = _table(["split", "lang", "utterances", "speakers", "voices", "hours"], rows)
    skip_rows = _table(["lang", "reason", "count"],
                       [[lang, r, n] for (lang, r), n in sorted(skipped.items()) if n])
    _write(out_dir / "local" / "corpus_summary.tsv", summary)
    _write(out_dir / "local" / "corpus_skipped.tsv", skip_rows)
    _write(out_dir / "local" / "corpus_config.json",
           [json.dumps(asdict(opts), indent=2, sort_keys=True)])
    speakers = sorted({j.speaker for js in kept.values() for j, _ in js}, key=lambda s: s.spk)
    fields = list(voices.Perturbation.__dataclass_fields__)
    _write(out_dir / "local" / "speakers.tsv", _table(
        ["spk", "lang", "split", "engine", "voice", "voice_id", *fields],
        [[s.spk, s.lang, s.split, s.engine, s.voice, s.voice_id,
          *(getattr(s.perturbation, f) for f in fields)] for s in speakers]))
    logging.info("corpus summary:\n%s", "\n".join(summary))
    logging.info("skipped lines/utterances:\n%s", "\n".join(skip_rows))
    return rows
