"""Which voices exist, which split each belongs to, and the perturbed speakers made of them.

A *voice* is one engine voice with all its perturbations; it is the unit the splits are
disjoint in (docs/corpus.md, "Speaker-independent splits"):

* espeak-ng: a voice is one *variant* (``m3``, ``Alex``, ``klatt4``: the voice quality,
  formants and pitch).  A variant belongs to one split for EVERY language and accent, so a
  test variant is heard in no language's training data; per language each variant is
  spoken with one accent of that language (``en-gb-scotland+Alex``), chosen by a fixed hash.
* flite and festival: a voice is the *recorded human* behind the engine voice.  flite
  ``kal``/``kal16`` and festival ``kal_diphone`` are the same person (Kal), as are flite
  ``slt`` and festival ``cmu_us_slt_arctic_hts`` (SLT), so they are split together.
* recorded speech (nl, cs, the game's voice acting): a voice is a character; the two fish
  speak ~85 % of the lines and stay in train, the minor characters of
  :data:`HELD_OUT_CHARACTERS` are dev/test speakers.

A *speaker* is a voice plus one seeded perturbation (speed, pitch, tempo, reverberation,
band limit, noise at an SNR, level); every voice has several.  The voice split is fixed
(it does not depend on ``--seed``), so the held-out voices are the same in every build.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

SPLITS = ("train", "dev", "test")
#: Languages with real recordings (fillets-ng-data-<lang>); the others are synthesised.
RECORDED_LANGS = ("nl", "cs")

#: espeak-ng variants (``espeak-ng --voices=variant``, Debian espeak-ng 1.51) used.  Left
#: out: ``fast`` (a speed test) and ``Mr serious`` (its name has a space).
ESPEAK_VARIANTS: Tuple[str, ...] = (
    "Alex", "Alicia", "Andrea", "Andy", "Annie", "AnxiousAndy", "Demonic", "Denis", "Diogo",
    "Gene", "Gene2", "Henrique", "Hugo", "Jacky", "Lee", "Marco", "Mario", "Michael", "Mike",
    "Nguyen", "RicishayMax", "RicishayMax2", "RicishayMax3", "Storm", "Tweaky", "UniRobot",
    "adam", "anika", "anikaRobot", "announcer", "antonio", "aunty", "belinda", "benjamin",
    "boris", "caleb", "croak", "david", "ed", "edward", "edward2", "f1", "f2", "f3", "f4",
    "f5", "grandma", "grandpa", "gustave", "iven", "iven2", "iven3", "iven4", "john",
    "kaukovalta", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "linda", "m1",
    "m2", "m3", "m4", "m5", "m6", "m7", "m8", "marcelo", "max", "michel", "miguel", "norbert",
    "pablo", "paul", "pedro", "quincy", "rob", "robert", "robosoft", "robosoft2", "robosoft3",
    "robosoft4", "robosoft5", "robosoft6", "robosoft7", "robosoft8", "sandro", "shelby",
    "steph", "steph2", "steph3", "travis", "victor", "whisper", "whisperf", "zac",
)
#: Held-out espeak-ng variants: a mix of male, female, klatt-synthesis and named voices in
#: each; whispered and robotic-only voices are left to train.
HELD_OUT_VARIANTS: Dict[str, Tuple[str, ...]] = {
    "dev": ("m5", "f4", "klatt5", "Alex", "belinda", "boris", "Denis", "Jacky", "paul",
            "quincy", "norbert", "robosoft6"),
    "test": ("m3", "f2", "klatt3", "Andy", "Annie", "Gene", "Lee", "Mario", "Michael",
             "steph2", "grandma", "robosoft3"),
}
#: espeak-ng accents per language; each (language, variant) uses one of them.
ESPEAK_ACCENTS: Dict[str, Tuple[str, ...]] = {
    "en": ("en-us", "en-gb", "en-029", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
           "en-gb-x-rp", "en-us-nyc"),
    "fr": ("fr-fr", "fr-be", "fr-ch"),
    "it": ("it",),
    "nl": ("nl",),
    "cs": ("cs",),
}
#: (engine, engine voice, human, split) of the flite/festival voices per language.
HUMAN_VOICES: Dict[str, List[Tuple[str, str, str, str]]] = {
    "en": [
        ("flite", "kal", "kal", "train"), ("flite", "kal16", "kal", "train"),
        ("festival", "kal_diphone", "kal", "train"), ("flite", "awb", "awb", "train"),
        ("flite", "slt", "slt", "dev"), ("festival", "cmu_us_slt_arctic_hts", "slt", "dev"),
        ("flite", "rms", "rms", "test"), ("festival", "ked_diphone", "ked", "test"),
    ],
    "it": [("festival", "lp_diphone", "lp", "train"), ("festival", "pc_diphone", "pc", "test")],
}
#: Probability of each engine when a line's speakers are drawn (renormalised over the
#: engines a split has): the flite/festival voices are few but nearer to real speech.
ENGINE_WEIGHTS: Dict[str, Dict[str, float]] = {
    "en": {"espeak": 0.5, "flite": 0.25, "festival": 0.25},
    "it": {"espeak": 0.7, "festival": 0.3},
}
#: Perturbed speakers per voice (espeak has many voices, flite/festival few).
PERTURBATIONS = {"espeak": 2, "flite": 6, "festival": 6}
#: Dutch/Czech characters (code in the dialogue id) that are dev/test speakers; chosen so
#: both languages have recordings of them (nl: 44 dev / 69 test lines, cs: 79 / 81).
HELD_OUT_CHARACTERS: Dict[str, Tuple[str, ...]] = {"dev": ("1", "2", "4"),
                                                   "test": ("0", "3", "b2")}


def stable_seed(*parts: object) -> int:
    """Seed derived from a hash, stable across runs and Python versions
    (``hash()`` is salted per process, so it must not be used)."""
    return int.from_bytes(hashlib.sha256("\t".join(map(str, parts)).encode()).digest()[:8], "big")


def variant_split(variant: str) -> str:
    """Split of an espeak-ng variant (the same for every language)."""
    for split, names in HELD_OUT_VARIANTS.items():
        if variant in names:
            return split
    return "train"


def character_split(character: str) -> str:
    """Split of a recorded character (fish and unlisted minor characters: train)."""
    for split, names in HELD_OUT_CHARACTERS.items():
        if character in names:
            return split
    return "train"


def kaldi_safe(s: str) -> str:
    """Speaker ids must not contain ``-`` (``utt = spk-level-id``) or odd characters."""
    return re.sub(r"[^A-Za-z0-9_.]", "", s)


@dataclass(frozen=True)
class Perturbation:
    """Signal changes of one speaker (sox effects, then level and noise in numpy)."""

    speed: float = 1.0  # sox speed: pitch, formants and tempo together (a "formant shift")
    pitch_cents: int = 0  # sox pitch: pitch only
    tempo: float = 1.0  # sox tempo: duration only
    reverb: int = 0  # sox reverb reverberance in %, 0 = dry
    room_scale: int = 0  # sox reverb room-scale in %
    band: str = ""  # "" | "tel" (300-3400 Hz) | "lp<Hz>" | "hp<Hz>"
    snr_db: Optional[float] = None  # None = no added noise
    noise_color: str = "white"  # white | pink | brown
    level_db: float = -24.0  # speech RMS level in dBFS
    espeak_pitch: int = 50  # espeak-ng -p
    espeak_wpm: int = 175  # espeak-ng -s


@dataclass(frozen=True)
class Speaker:
    """One voice + one perturbation; ``spk`` is the Kaldi speaker id, ``voice_id`` the
    language-independent voice identity the splits are disjoint in."""

    spk: str
    lang: str
    engine: str  # espeak | flite | festival | recorded
    voice: str  # what the engine is given (espeak "en-us+m3", flite "slt", a character)
    voice_id: str  # espeak.m3, human.kal, fillets_nl.m
    split: str
    perturbation: Perturbation = Perturbation()


def draw_perturbation(rng: random.Random, engine: str) -> Perturbation:
    """A speaker's perturbation; ranges in docs/corpus.md ("Perturbations")."""
    u = rng.random()
    band = ("tel" if u < 0.15 else f"lp{rng.randint(3500, 6000)}" if u < 0.30
            else f"hp{rng.randint(150, 400)}" if u < 0.40 else "")
    reverb = rng.random() < 0.3
    espeak = engine == "espeak"  # espeak-ng varies pitch and rate itself
    return Perturbation(
        speed=round(rng.uniform(0.9, 1.1), 3),
        pitch_cents=0 if espeak else rng.randint(-250, 250),
        tempo=1.0 if espeak else round(rng.uniform(0.9, 1.12), 3),
        reverb=rng.randint(20, 70) if reverb else 0,
        room_scale=rng.randint(30, 100) if reverb else 0,
        band=band,
        snr_db=rng.choice([None, 30.0, 25.0, 20.0, 15.0, 10.0]),
        noise_color=rng.choice(["white", "pink", "brown"]),
        level_db=round(rng.uniform(-30.0, -18.0), 1),
        espeak_pitch=rng.randint(25, 75) if espeak else 50,
        espeak_wpm=rng.randint(140, 200) if espeak else 175,
    )


def base_voices(lang: str) -> List[Tuple[str, str, str, str, str]]:
    """(engine, engine voice, short tag, voice_id, split) of every synthetic voice."""
    out = []
    accents = ESPEAK_ACCENTS[lang]
    for variant in ESPEAK_VARIANTS:
        accent = accents[stable_seed("accent", lang, variant) % len(accents)]
        out.append(("espeak", f"{accent}+{variant}", kaldi_safe(variant), f"espeak.{variant}",
                    variant_split(variant)))
    for engine, voice, human, split in HUMAN_VOICES.get(lang, []):
        out.append((engine, voice, kaldi_safe(voice), f"human.{human}", split))
    return out


def speaker_pool(lang: str, split: str, seed: int) -> List[Speaker]:
    """The synthetic speakers of one language and split, perturbations seeded by ``seed``."""
    pool = []
    for engine, voice, tag, voice_id, vsplit in base_voices(lang):
        if vsplit != split:
            continue
        for k in range(PERTURBATIONS[engine]):
            rng = random.Random(stable_seed(seed, lang, engine, voice, k))
            pool.append(Speaker(f"{lang}_{engine}.{tag}.{k}", lang, engine, voice, voice_id,
                                split, draw_perturbation(rng, engine)))
    return pool


def recorded_speaker(lang: str, character: str) -> Speaker:
    """The speaker of a game recording: the character, unperturbed (real speech)."""
    char = kaldi_safe(character) or "other"
    return Speaker(f"{lang}_{char}", lang, "recorded", character, f"fillets_{lang}.{char}",
                   character_split(character))


def pick_speakers(pool: Sequence[Speaker], n: int, rng: random.Random) -> List[Speaker]:
    """``n`` speakers of distinct voices: an engine by :data:`ENGINE_WEIGHTS`, then a
    speaker of that engine uniformly."""
    chosen: List[Speaker] = []
    used = set()
    for _ in range(n):
        left = [s for s in pool if s.voice_id not in used]
        if not left:
            break
        weights = ENGINE_WEIGHTS.get(left[0].lang, {})
        engines = sorted({s.engine for s in left})
        engine = rng.choices(engines, [weights.get(e, 1.0) for e in engines])[0]
        spk = rng.choice([s for s in left if s.engine == engine])
        chosen.append(spk)
        used.add(spk.voice_id)
    return chosen
