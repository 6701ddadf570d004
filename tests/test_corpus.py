"""Tests of the embedded corpus builder (the recipe's ``local/``): pure unit tests plus
tiny real builds (voice-disjoint splits, determinism, Czech)."""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Dict, List

import pytest

from espnet_pathways.split_check import check_splits
from espnet_pathways.text import normalize, skip_reason, tts_text

LOCAL = Path(__file__).resolve().parents[1] / "local"
sys.path.insert(0, str(LOCAL))  # the builder is recipe code, not part of the package
from build_corpus import main as cli_main  # noqa: E402
from embedded_corpus import fillets, voices  # noqa: E402
from embedded_corpus.build import (  # noqa: E402
    CorpusError, Options, build, select_lines, split_of, validate)

HAVE_SOURCES = fillets.FILLETS_ROOT.exists() and all(
    shutil.which(b) for b in ("sox", "espeak-ng", "festival", "flite"))
needs_sources = pytest.mark.skipif(not HAVE_SOURCES, reason="Debian TTS/fillets packages missing")
FILES = ("wav.scp", "text", "utt2spk", "spk2utt", "utt2lang", "utt2dur", "spk2voice")
HAVE_CS = (fillets.FILLETS_ROOT / "sound" / "airplane" / "cs").exists()


# ----------------------------------------------------------------- text
@pytest.mark.parametrize("text,lang,expected", [
    ("L’avion, c'est «super» ! Peut-être…", "fr", "l'avion c'est super peut être"),
    ("Dell'aereo? 'Ciao'", "it", "dell'aereo ciao"),
    ("Don't   SAY \"it\"!", "en", "don't say it"),
    ("'s Avonds zo'n huis.", "nl", "'s avonds zo'n huis"),
    ("'Hallo'", "nl", "hallo"),
    ("Cafe\u0301 ÉTÉ", "fr", "café été"),  # NFC composes e + combining acute
    ("...!?", "en", ""),
    ("Co je to za divnou LOĎ? Říkám: „ŽLUŤOUČKÝ kůň“!", "cs",
     "co je to za divnou loď říkám žluťoučký kůň"),
])
def test_normalize(text: str, lang: str, expected: str) -> None:
    assert normalize(text, lang) == expected


def test_normalize_rejects_unknown_lang() -> None:
    with pytest.raises(ValueError, match="supported"):
        normalize("x", "de")


def test_skip_reason_and_tts_text() -> None:
    assert skip_reason("Room 101") == "digits"
    assert skip_reason("C:\\WINDOWS") == "symbols"
    assert skip_reason("Fine.") is None
    assert tts_text("«Peut-être», dit-il…") == "Peut être , dit il"


# ----------------------------------------------------------------- parsing
LUA = r'''
-- comment
for i = 0, 3 do dialogId("key"..i, "", "") end
dialogId("let-m-divna", "font_small", "Strange.")
dialogStr("Bizarre.")

dialogId("m-uvedomit", "font_small",
"He said \"hi\" \\ bye")
dialogStr("Il a dit \"salut\"")
dialogId("let-v-none", "font_big", "No translation")
'''


def test_parse_dialogs_english_and_translation() -> None:
    en = {d.id: d.text for d in fillets.parse_dialogs(LUA, "lvl", "en")}
    assert en == {"let-m-divna": "Strange.", "m-uvedomit": 'He said "hi" \\ bye',
                  "let-v-none": "No translation"}
    fr = fillets.parse_dialogs(LUA, "lvl", "fr")
    assert [(d.key, d.text) for d in fr] == [
        (("lvl", "let-m-divna"), "Bizarre."), (("lvl", "m-uvedomit"), 'Il a dit "salut"')]


def test_character() -> None:
    assert fillets.character("let-m-divna") == "m"
    assert fillets.character("m-uvedomit") == "m"
    assert fillets.character("help1") == "other"


# ----------------------------------------------------------------- splitting
def test_split_is_language_independent_and_seeded() -> None:
    keys = [("lvl", f"x-m-{i}") for i in range(2000)]
    splits = [split_of(k, 0, 0.05, 0.08) for k in keys]
    assert 0.03 < splits.count("dev") / 2000 < 0.07
    assert 0.06 < splits.count("test") / 2000 < 0.10
    assert splits != [split_of(k, 1, 0.05, 0.08) for k in keys]


def test_held_out_characters_go_to_their_split() -> None:
    """Every line of a held-out character is in that character's split whatever the
    seed, so its recordings can be used there and nowhere else."""
    for split, chars in voices.HELD_OUT_CHARACTERS.items():
        for ch in chars:
            assert {split_of(("lvl", f"x-{ch}-{i}"), seed, 0.05, 0.08)
                    for i in range(50) for seed in (0, 1)} == {split}
    assert voices.character_split("m") == voices.character_split("v") == "train"


def _dialogs(texts: List[str]) -> Dict[fillets.Key, fillets.Dialog]:
    return {("l", f"a-m-{i}"): fillets.Dialog("l", f"a-m-{i}", t, t) for i, t in enumerate(texts)}


def test_no_sentence_in_two_splits_and_low_resource() -> None:
    from collections import Counter
    texts = [f"sentence {chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(300)] + ["Same!"] * 60
    opts = Options(low_resource_lang="it", low_resource_fraction=0.25)
    lines = select_lines(_dialogs(texts), "fr", opts, Counter())
    by_split = {s: {ln.text for ln in lines if ln.split == s} for s in ("train", "dev", "test")}
    assert not (by_split["train"] & by_split["dev"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["dev"] & by_split["test"])
    it = select_lines(_dialogs(texts), "it", opts, Counter())
    n_train = lambda ls: sum(ln.split == "train" for ln in ls)  # noqa: E731
    assert 0.15 < n_train(it) / n_train(lines) < 0.35
    assert {ln.key for ln in it if ln.split != "train"} == \
        {ln.key for ln in lines if ln.split != "train"}


def test_validate_errors() -> None:
    with pytest.raises(CorpusError, match="supported: en,fr,it,nl,cs"):
        validate(Options(langs=["en", "de"]))
    with pytest.raises(CorpusError):
        validate(Options(dev_fraction=0.6, test_fraction=0.5))
    with pytest.raises(CorpusError, match="--extra_train_voices"):
        validate(Options(extra_train_voices=-1))


def test_speaker_ids_are_kaldi_safe() -> None:
    import re
    for lang in ("en", "fr", "it", "nl", "cs"):
        pool = [s for split in voices.SPLITS for s in voices.speaker_pool(lang, split, 0)]
        assert len({s.spk for s in pool}) == len(pool)
        assert all(re.fullmatch(r"[A-Za-z0-9_.]+", s.spk) for s in pool)


def test_voice_pools_are_disjoint_and_mixed() -> None:
    """No voice (all its perturbations) in two splits, in any language; an espeak
    variant held out in one language is held out in all; English dev and test each
    hold out a flite and a festival voice, Italian test a festival one."""
    split_of_voice: Dict[str, str] = {}
    for lang in ("en", "fr", "it", "nl", "cs"):
        for split in voices.SPLITS:
            pool = voices.speaker_pool(lang, split, 0)
            assert pool and all(s.split == split for s in pool)
            for s in pool:
                assert split_of_voice.setdefault(s.voice_id, split) == split, s
            engines = Counter(s.engine for s in pool)
            if lang == "en":
                assert set(engines) == {"espeak", "flite", "festival"}, (split, engines)
            voices_in = Counter(s.voice_id for s in pool)
            assert min(voices_in.values()) >= 2  # several perturbed speakers per voice
    assert len([v for v, s in split_of_voice.items() if s == "train"]) > 60
    assert {s.engine for s in voices.speaker_pool("it", "test", 0)} == {"espeak", "festival"}
    # Same human behind flite and festival -> one voice, one split.
    humans = {(e, v): vid for e, v, _, vid, _ in voices.base_voices("en") if e != "espeak"}
    assert humans[("flite", "slt")] == humans[("festival", "cmu_us_slt_arctic_hts")]
    assert humans[("flite", "kal16")] == humans[("festival", "kal_diphone")]


def test_perturbations_vary() -> None:
    pool = voices.speaker_pool("en", "train", 0)
    p = [s.perturbation for s in pool]
    assert len({x.speed for x in p}) > 50
    assert any(x.reverb for x in p) and any(not x.reverb for x in p)
    assert {x.band[:2] for x in p} >= {"", "te", "lp", "hp"}
    assert len({x.snr_db for x in p}) >= 4 and {x.noise_color for x in p} == {
        "white", "pink", "brown"}
    assert pool != voices.speaker_pool("en", "train", 1)  # seeded


def test_level_and_noise_snr() -> None:
    import numpy as np
    from embedded_corpus.tts import level_and_noise
    t = np.arange(16000) / 16000
    x = np.sin(2 * np.pi * 220 * t)
    clean = level_and_noise(x, voices.Perturbation(level_db=-20.0), 0)
    assert abs(20 * np.log10(np.sqrt(np.mean(clean ** 2))) + 20) < 0.01
    noisy = level_and_noise(x, voices.Perturbation(level_db=-20.0, snr_db=10.0,
                                                   noise_color="pink"), 0)
    snr = 10 * np.log10(np.mean(clean ** 2) / np.mean((noisy - clean) ** 2))
    assert abs(snr - 10.0) < 0.01
    assert np.max(np.abs(level_and_noise(x, voices.Perturbation(level_db=0.0), 0))) <= 0.95


# ----------------------------------------------------------------- tiny build
def _read(path: Path) -> List[str]:
    return path.read_text(encoding="utf-8").splitlines()


def _tiny(tmp: Path, out: str, **kw: object) -> Options:
    kw.setdefault("extra_train_voices", 0)
    opts = Options(max_lines_per_lang=2, voices_per_line=1, audio_dir=str(tmp / "audio"),
                   out_dir=str(tmp / out), nj=2, **kw)
    build(opts)
    return opts


@needs_sources
def test_tiny_build(tmp_path: Path) -> None:
    _tiny(tmp_path, "data", extra_train_voices=1)
    data = tmp_path / "data"
    all_utts: Dict[str, set] = {}
    voices_per_sentence: Dict[str, Counter] = {}
    for split in ("train", "dev", "test"):
        cols = {f: [ln.split(" ", 1) for ln in _read(data / split / f)] for f in FILES}
        utts = [u for u, _ in cols["wav.scp"]]
        assert utts and utts == sorted(utts)
        for f in ("text", "utt2spk", "utt2lang", "utt2dur"):
            assert [u for u, _ in cols[f]] == utts, f
        for (u, spk), (_, lang) in zip(cols["utt2spk"], cols["utt2lang"]):
            assert u.startswith(spk + "-") and spk.startswith(lang + "_")
        assert {lang for _, lang in cols["utt2lang"]} == {"en", "fr", "it", "nl"}
        for _, wav in cols["wav.scp"]:
            assert Path(wav).is_absolute() and Path(wav).exists()
        for _, dur in cols["utt2dur"]:
            assert 0.5 <= float(dur) <= 8.0
        sentences = [(u.split("-", 1)[1] + lang, lang) for (u, _), (_, lang)
                     in zip(cols["utt2spk"], cols["utt2lang"])]
        all_utts[split] = {sent for sent, _ in sentences}
        voices_per_sentence[split] = Counter(sent for sent, lang in sentences if lang != "nl")
    # --voices_per_line 1 everywhere, plus --extra_train_voices 1 in train (en/fr/it).
    assert max(voices_per_sentence["train"].values()) == 2
    assert max(voices_per_sentence["dev"].values()) == 1
    assert max(voices_per_sentence["test"].values()) == 1
    assert not (all_utts["train"] & all_utts["dev"]) and not (all_utts["dev"] & all_utts["test"])
    summary = _read(data / "local" / "corpus_summary.tsv")
    assert summary[0] == "split\tlang\tutterances\tspeakers\tvoices\thours"
    assert len(summary) == 13
    assert (data / "local" / "corpus_config.json").exists()
    # Voice-disjoint: no dev/test speaker, voice or sentence in train (the generic check,
    # and directly on spk2voice).
    check_splits(data / "train", [data / "dev", data / "test"])
    spk_voices = {s: dict(ln.split(" ", 1) for ln in _read(data / s / "spk2voice"))
                  for s in ("train", "dev", "test")}
    assert not set(spk_voices["train"].values()) & set(spk_voices["test"].values())
    assert not set(spk_voices["train"].values()) & set(spk_voices["dev"].values())

    # Same seed -> identical lists; the rerun reuses cached wavs and re-makes
    # a corrupt one instead of trusting it.
    corrupt = Path(_read(data / "train" / "wav.scp")[0].split(" ", 1)[1])
    corrupt.write_bytes(b"not a wav")
    _tiny(tmp_path, "again", extra_train_voices=1)
    assert corrupt.stat().st_size > 1000
    for split in ("train", "dev", "test"):
        for f in FILES:
            assert _read(data / split / f) == _read(tmp_path / "again" / split / f)


@needs_sources
def test_cli_unknown_language(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(SystemExit) as e:
        cli_main(["--langs", "en,xx", "--out_dir", str(tmp_path)])
    assert e.value.code == 1
    assert "supported: en,fr,it,nl,cs" in caplog.text


@needs_sources
def test_failed_utterance_is_skipped_and_counted(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine failure is a warning naming the utterance and, above 5% of a
    language, a fatal error naming the language."""
    from embedded_corpus import tts

    def broken(spk: object, text: str, raw: Path) -> None:
        raise RuntimeError("simulated espeak crash")

    monkeypatch.setattr(tts, "synth_one", broken)
    with pytest.raises(CorpusError, match="^fr: .*failed"):
        _tiny(tmp_path, "data", langs=["fr"])


@needs_sources
@pytest.mark.skipif(not HAVE_CS, reason="fillets-ng-data-cs missing")
def test_tiny_czech_build(tmp_path: Path) -> None:
    """The add-a-language contract: ``--langs cs`` builds Kaldi dirs of real Czech speech
    (held-out characters in dev/test) with Czech letters kept, and a summary."""
    data = tmp_path / "lang_cs"
    build(Options(langs=["cs"], max_lines_per_lang=3, audio_dir=str(tmp_path / "audio"),
                  out_dir=str(data), nj=2))
    engines = Counter()
    for split in ("train", "dev", "test"):
        for f in FILES:
            assert _read(data / split / f), (split, f)
        assert {ln.split(" ", 1)[1] for ln in _read(data / split / "utt2lang")} == {"cs"}
        for ln in _read(data / split / "spk2voice"):
            spk, voice = ln.split(" ", 1)
            engines[(split, voice.split(".")[0])] += 1
            if voice.startswith("fillets_cs."):  # a recorded character of this split
                assert voices.character_split(voice.split(".", 1)[1]) == split
    assert engines[("train", "fillets_cs")] >= 1
    check_splits(data / "train", [data / "dev", data / "test"])
    text = " ".join(_read(data / "train" / "text") + _read(data / "test" / "text"))
    assert set(text) & set("áčďéěíňóřšťúůýž")
    assert _read(data / "local" / "corpus_summary.tsv")[1].startswith("train\tcs\t")


def test_default_langs_exclude_czech() -> None:
    assert Options().langs == ["en", "fr", "it", "nl"]


@needs_sources
@pytest.mark.parametrize("band", ["tel", "lp3500", "hp400"])
def test_postprocess_8khz_voice_with_band_limit(tmp_path: Path, band: str) -> None:
    """flite's kal is an 8 kHz voice: every band limit must still work on it (the chain
    resamples to 16 kHz before filtering), and the result is 16 kHz mono."""
    import subprocess
    from embedded_corpus import tts
    raw = tmp_path / "raw.wav"
    subprocess.run(["sox", "-n", "-r", "8000", "-c", "1", "-b", "16", str(raw), "synth", "1",
                    "sine", "440"], check=True)
    spk = voices.Speaker("en_flite.kal.0", "en", "flite", "kal", "human.kal", "train",
                         voices.Perturbation(speed=0.9, pitch_cents=100, tempo=1.1, reverb=40,
                                             room_scale=50, band=band, snr_db=10.0))
    out = tmp_path / "out.wav"
    tts.postprocess(raw, out, spk, "utt", 0)
    import wave
    with wave.open(str(out)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (16000, 1, 2)
    assert 0.7 < tts.wav_duration(out) < 1.3


@needs_sources
def test_fresh_builds_are_identical_whatever_nj(tmp_path: Path) -> None:
    """Deterministic audio, not only lists: two fresh builds (nj 2 and nj 1, separate
    audio dirs) give byte-identical wavs (seeded perturbations, noise and sox -R)."""
    wavs = []
    for nj in (2, 1):
        out = tmp_path / f"nj{nj}"
        build(Options(langs=["en", "it"], max_lines_per_lang=1, audio_dir=str(out / "audio"),
                      out_dir=str(out / "data"), nj=nj))
        scp = [ln.split(" ", 1) for s in ("train", "dev", "test")
               for ln in _read(out / "data" / s / "wav.scp")]
        wavs.append({u: Path(p).read_bytes() for u, p in scp})
    assert wavs[0] and wavs[0] == wavs[1]
