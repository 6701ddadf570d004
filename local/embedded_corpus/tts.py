"""Synthetic speakers for en/fr/it and the sox post-processing shared with nl.

Only free engines from Debian main are used: espeak-ng, festival (diphone and
HTS voices from the festvox-* packages) and flite.  MBROLA, Pico and RHVoice
voices are deliberately absent (non-free or not in main).

A *speaker* is one engine voice plus a fixed perturbation (sox speed factor,
pitch shift in cents, white-noise level), derived from the build seed, so the
same voice with two perturbations gives two distinct speakers.
"""

from __future__ import annotations

import hashlib
import logging
import random
import subprocess
import tempfile
import threading
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_pathways.fileio import atomic_output

# (engine, engine voice name, short tag used in speaker ids)
BASE_VOICES: Dict[str, List[Tuple[str, str, str]]] = {
    "en": [
        ("espeak", "en-us+m1", "usm1"), ("espeak", "en-us+m3", "usm3"),
        ("espeak", "en-us+f2", "usf2"), ("espeak", "en-us+f4", "usf4"),
        ("espeak", "en+m2", "gbm2"), ("espeak", "en+m4", "gbm4"),
        ("espeak", "en+f1", "gbf1"), ("espeak", "en+f3", "gbf3"),
        ("espeak", "en+klatt", "gbklatt"), ("espeak", "en+croak", "gbcroak"),
        ("flite", "slt", "slt"), ("flite", "awb", "awb"), ("flite", "rms", "rms"),
        ("flite", "kal16", "kal16"),
        ("festival", "kal_diphone", "kal"), ("festival", "ked_diphone", "ked"),
        ("festival", "cmu_us_slt_arctic_hts", "slthts"),
    ],
    "fr": [("espeak", f"fr+{v}", v) for v in
           ("m1", "m2", "m3", "m4", "m5", "m7", "f1", "f2", "f3", "f4", "klatt", "croak")],
    "it": [("espeak", f"it+{v}", v) for v in
           ("m1", "m2", "m3", "m5", "f1", "f2", "f4", "klatt")]
    + [("festival", "lp_diphone", "lp"), ("festival", "pc_diphone", "pc")],
}
PERTURBATIONS_PER_VOICE = 2
SAMPLE_RATE = 16000
_TIMEOUT = 120


def stable_seed(*parts: object) -> int:
    """Seed derived from a hash, stable across runs and Python versions
    (``hash()`` is salted per process, so it must not be used)."""
    return int.from_bytes(hashlib.sha256("\t".join(map(str, parts)).encode()).digest()[:8], "big")


@dataclass(frozen=True)
class Speaker:
    """One voice + perturbation; ``spk`` is the Kaldi speaker id."""

    spk: str
    lang: str
    engine: str  # espeak | flite | festival | recorded
    voice: str
    speed: float = 1.0
    pitch_cents: int = 0
    noise: float = 0.0
    espeak_pitch: int = 50


def speaker_pool(lang: str, seed: int) -> List[Speaker]:
    """All synthetic speakers of a language, with seed-dependent perturbations."""
    pool = []
    for engine, voice, tag in BASE_VOICES[lang]:
        for k in range(PERTURBATIONS_PER_VOICE):
            rng = random.Random(stable_seed(seed, lang, engine, voice, k))
            pool.append(Speaker(
                spk=f"{lang}_{engine}.{tag}.{k}", lang=lang, engine=engine, voice=voice,
                speed=round(rng.uniform(0.9, 1.1), 3), pitch_cents=rng.randint(-150, 150),
                noise=round(rng.uniform(0.002, 0.012), 4), espeak_pitch=rng.randint(35, 65)))
    return pool


def wav_duration(path: Path) -> float:
    """Duration in seconds of a PCM wav; raises if unreadable or empty."""
    with wave.open(str(path), "rb") as w:
        frames, rate = w.getnframes(), w.getframerate()
    if frames <= 0 or rate <= 0:
        raise ValueError(f"empty audio in {path}")
    return frames / rate


def _run(cmd: Sequence[str], stdin: Optional[str] = None) -> None:
    """Run a tool; raise RuntimeError with its stderr so callers can name the utterance."""
    p = subprocess.run(list(cmd), input=stdin.encode() if stdin is not None else None,
                       capture_output=True, timeout=_TIMEOUT)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {' | '.join(err[-3:])}")


_noise_lock = threading.Lock()


def noise_file(cache_dir: Path, rate: int) -> Path:
    """A 40 s mono white-noise wav at ``rate`` (sox -m needs equal rates); made once."""
    path = cache_dir / f"noise_{rate}.wav"
    with _noise_lock:
        if not path.exists():
            with atomic_output(path, suffix=".wav") as tmp:  # sox picks the format by it
                _run(["sox", "-R", "-n", "-r", str(rate), "-c", "1", "-b", "16", str(tmp),
                      "synth", "40", "whitenoise"])
    return path


def postprocess(raw: Path, out: Path, spk: Speaker, noise_dir: Path) -> None:
    """Mix in noise, apply speed/pitch, resample to 16 kHz mono 16-bit; atomic write."""
    with atomic_output(out, suffix=".wav") as tmp:  # sox picks the format by the suffix
        fmt = ["-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", "-e", "signed-integer", str(tmp)]
        if spk.engine == "recorded":
            cmd = ["sox", "-R", str(raw), *fmt]
        else:
            with wave.open(str(raw), "rb") as w:
                rate, dur = w.getframerate(), w.getnframes() / w.getframerate()
            cmd = ["sox", "-R", "-m", "-v", "1", str(raw), "-v", str(spk.noise),
                   str(noise_file(noise_dir, rate)), *fmt, "trim", "0", f"{dur:.4f}",
                   "speed", str(spk.speed), "pitch", str(spk.pitch_cents),
                   "rate", str(SAMPLE_RATE)]
        _run(cmd)
        wav_duration(tmp)


def synth_one(spk: Speaker, text: str, raw: Path) -> None:
    """Synthesise ``text`` with an espeak-ng or flite speaker into ``raw``."""
    if spk.engine == "espeak":
        _run(["espeak-ng", "-v", spk.voice, "-p", str(spk.espeak_pitch), "-w", str(raw),
              "--stdin"], stdin=text)
    elif spk.engine == "flite":
        _run(["flite", "-voice", spk.voice, "-t", text, "-o", str(raw)])
    else:
        raise ValueError(f"synth_one does not handle engine {spk.engine}")


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def synth_festival(voice: str, items: Sequence[Tuple[str, Path]]) -> None:
    """Synthesise many (text, raw_path) with one festival process.

    Festival takes ~0.4 s to start, so batching is what makes it affordable.
    Each utterance is wrapped in ``unwind-protect`` so one bad line does not
    abort the batch; callers detect failures by the missing output file.
    Festival reads ISO-8859-1, hence the encoding (Italian accents).
    """
    lines = [f"(voice_{voice})"]
    for text, raw in items:
        lines.append(f"(unwind-protect (utt.save.wave (SynthText {_scheme_string(text)}) "
                     f"{_scheme_string(str(raw))} 'riff) nil)")
    with tempfile.NamedTemporaryFile("wb", suffix=".scm", delete=False) as f:
        f.write("\n".join(lines).encode("latin-1", errors="replace"))
        script = f.name
    try:
        subprocess.run(["festival", "-b", script], capture_output=True,
                       timeout=_TIMEOUT + 5 * len(items))
    except subprocess.TimeoutExpired:
        logging.warning("festival %s timed out on a batch of %d", voice, len(items))
    finally:
        Path(script).unlink(missing_ok=True)
