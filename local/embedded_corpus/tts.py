"""Synthesis with the free Debian engines and the per-speaker signal perturbation.

Only free engines from Debian main are used: espeak-ng, festival (diphone and HTS voices
from the festvox-* packages) and flite.  MBROLA, Pico and RHVoice voices are deliberately
absent (non-free or not in main).

Post-processing is ONE sox call per utterance (speed, pitch, tempo, reverb, band limit,
resampling to 16 kHz: sox is the fast, well-kept tool for these) whose raw samples numpy
then brings to the speaker's level and mixes with seeded noise at the speaker's SNR
(an SNR needs the speech's own power, which one sox call cannot measure and use).
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from embedded_corpus.voices import Perturbation, Speaker, stable_seed
from espnet_pathways.fileio import atomic_output

SAMPLE_RATE = 16000
_TIMEOUT = 120


def wav_duration(path: Path) -> float:
    """Duration in seconds of a PCM wav; raises if unreadable or empty."""
    with wave.open(str(path), "rb") as w:
        frames, rate = w.getnframes(), w.getframerate()
    if frames <= 0 or rate <= 0:
        raise ValueError(f"empty audio in {path}")
    return frames / rate


def _run(cmd: Sequence[str], stdin: Optional[str] = None) -> bytes:
    """Run a tool; raise RuntimeError with its stderr so callers can name the utterance."""
    p = subprocess.run(list(cmd), input=stdin.encode() if stdin is not None else None,
                       capture_output=True, timeout=_TIMEOUT)
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}: {' | '.join(err[-3:])}")
    return p.stdout


def sox_effects(p: Perturbation, engine: str) -> List[str]:
    """The sox effect chain of a perturbation (ending at 16 kHz).  espeak-ng sets pitch
    and rate itself (``-p``, ``-s``), so its speakers skip sox's ``pitch`` and ``tempo``
    (the two costly effects, ~4x the time of the rest of the chain)."""
    fx = ["speed", str(p.speed)]
    if engine != "espeak":
        fx += ["pitch", str(p.pitch_cents), "tempo", "-s", str(p.tempo)]
    # Resample first: an 8 kHz voice (flite kal) has no band up to 3400 Hz to filter.
    fx += ["rate", str(SAMPLE_RATE)]
    if p.reverb:
        fx += ["reverb", str(p.reverb), "50", str(p.room_scale)]
    if p.band == "tel":
        fx += ["sinc", "300-3400"]
    elif p.band.startswith("lp"):
        fx += ["lowpass", p.band[2:]]
    elif p.band.startswith("hp"):
        fx += ["highpass", p.band[2:]]
    return fx


def colored_noise(n: int, color: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-power noise: white, pink (1/f power) or brown (1/f^2), shaped in the FFT domain."""
    white = rng.standard_normal(n)
    if color != "white":
        spec = np.fft.rfft(white)
        f = np.arange(len(spec), dtype=np.float64)
        f[0] = 1.0
        spec /= f ** (0.5 if color == "pink" else 1.0)
        white = np.fft.irfft(spec, n)
    return white / (np.sqrt(np.mean(white ** 2)) + 1e-12)


def level_and_noise(x: np.ndarray, p: Perturbation, seed: int) -> np.ndarray:
    """Scale speech to ``p.level_db`` RMS, add noise at ``p.snr_db``, keep peaks < 1."""
    rms = np.sqrt(np.mean(x ** 2))
    if rms <= 0:
        raise ValueError("silent audio")
    y = x * (10 ** (p.level_db / 20) / rms)
    if p.snr_db is not None:
        noise = colored_noise(len(y), p.noise_color, np.random.default_rng(seed))
        y = y + noise * 10 ** ((p.level_db - p.snr_db) / 20)
    peak = np.max(np.abs(y))
    return y * (0.95 / peak) if peak > 0.95 else y


def _write_wav(path: Path, y: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(np.round(y * 32767).astype("<i2").tobytes())


def postprocess(raw: Path, out: Path, spk: Speaker, utt: str, seed: int) -> None:
    """Perturb ``raw`` as ``spk`` into a 16 kHz mono 16-bit wav ``out`` (atomic write).
    Recorded speech is only converted: it is real, and its speaker is the character."""
    with atomic_output(out, suffix=".wav") as tmp:
        if spk.engine == "recorded":
            _run(["sox", "-R", str(raw), "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16",
                  "-e", "signed-integer", str(tmp)])
        else:
            pcm = _run(["sox", "-R", str(raw), "-t", "raw", "-e", "floating-point", "-b", "32",
                        "-c", "1", "-", *sox_effects(spk.perturbation, spk.engine)])
            x = np.frombuffer(pcm, dtype="<f4").astype(np.float64)
            if x.size == 0:
                raise ValueError("sox produced no samples")
            _write_wav(tmp, level_and_noise(x, spk.perturbation, stable_seed(seed, utt)))
        wav_duration(tmp)


def synth_one(spk: Speaker, text: str, raw: Path) -> None:
    """Synthesise ``text`` with an espeak-ng or flite speaker into ``raw``."""
    p = spk.perturbation
    if spk.engine == "espeak":
        _run(["espeak-ng", "-v", spk.voice, "-p", str(p.espeak_pitch), "-s", str(p.espeak_wpm),
              "-w", str(raw), "--stdin"], stdin=text)
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
