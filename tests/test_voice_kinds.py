"""RESULTS.md's test CER per kind of held-out voice (espeak-ng, flite/festival, recorded)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from espnet_pathways.bin import make_results
from espnet_pathways.reporting.voice_kinds import utterance_kinds, voice_kind, voice_kind_rows


def _lines(path: Path, rows) -> None:
    path.write_text("".join(f"{k} {v}\n" for k, v in rows), encoding="utf-8")


def _data(tmp_path: Path) -> Path:
    d = tmp_path / "data" / "test"
    d.mkdir(parents=True)
    utts = [  # uttid, speaker, voice, language, reference
        ("en_a", "en_espeak.m3.0", "espeak.m3", "en", "abcd"),
        ("en_b", "en_flite.rms.1", "human.rms", "en", "abcd"),
        ("en_c", "en_flite.rms.1", "human.rms", "en", "efgh"),
        ("nl_a", "nl_0", "fillets_nl.0", "nl", "abcd"),
    ]
    _lines(d / "text", [(u, r) for u, _, _, _, r in utts])
    _lines(d / "utt2spk", [(u, s) for u, s, _, _, _ in utts])
    _lines(d / "utt2lang", [(u, lang) for u, _, _, lang, _ in utts])
    _lines(d / "spk2voice", sorted({(s, v) for _, s, v, _, _ in utts}))
    return d


def _system(tmp_path: Path, name: str, hyps: dict) -> Path:
    exp = tmp_path / "exp" / name
    for lang, rows in hyps.items():
        d = exp / "decode_streaming" / f"test_{lang}"
        d.mkdir(parents=True)
        _lines(d / "text", rows.items())
    return exp


def test_voice_kind_is_the_id_up_to_its_first_dot() -> None:
    assert voice_kind("espeak.m3") == "espeak"
    assert voice_kind("human.slt") == "human"
    assert voice_kind("fillets_nl.b2") == "fillets_nl"
    assert voice_kind("plain") == "plain"


def test_cer_per_language_and_kind_with_a_missing_hypothesis(tmp_path: Path) -> None:
    data = _data(tmp_path)
    # en espeak: 1 of 4 chars wrong; en human: en_b right, en_c missing (4 deletions)
    exp = _system(tmp_path, "dense", {"en": {"en_a": "abcx", "en_b": "abcd"},
                                      "nl": {"nl_a": "ab"}})
    header, rows = voice_kind_rows([("dense", str(exp))], data, "decode_streaming",
                                   ["en", "nl"])
    assert header == ["System", "Voices", "en CER (utts)", "nl CER (utts)"]
    assert rows == [
        ["dense", "espeak-ng variants", "25.0 (1)", "n/a"],
        ["dense", "flite/festival (a recorded person)", "50.0 (2)", "n/a"],
        ["dense", "recorded voice acting (fillets_nl)", "n/a", "50.0 (1)"],
    ]
    # a system without decodings is left out; none at all: no table
    assert voice_kind_rows([("ghost", str(tmp_path / "none"))], data, "decode_streaming",
                           ["en"]) is None


def test_a_speaker_without_a_voice_is_named(tmp_path: Path) -> None:
    data = _data(tmp_path)
    _lines(data / "spk2voice", [("en_espeak.m3.0", "espeak.m3")])
    with pytest.raises(ValueError, match="no voice for speaker 'en_flite.rms.1'"):
        utterance_kinds(data)
    (data / "spk2voice").unlink()
    with pytest.raises(FileNotFoundError, match="spk2voice"):
        utterance_kinds(data)


def _write_score(exp: Path, lang: str, sub: str, rate: float) -> None:
    d = exp / "decode_streaming" / f"test_{lang}" / sub
    d.mkdir(parents=True)
    (d / "score.json").write_text(json.dumps({
        "unit": "char", "n_utt": 1, "n_ref": 4, "cor": 3, "sub": 1, "del": 0, "ins": 0,
        "err": 1, "error_rate": rate, "sentence_error_rate": 100.0, "missing": 0,
        "sclite_agrees": True}))


def test_make_results_adds_the_section_and_a_bad_dir_is_one_line(tmp_path: Path, caplog) -> None:
    data = _data(tmp_path)
    exp = _system(tmp_path, "dense", {"en": {"en_a": "abcd", "en_b": "abcd", "en_c": "efgh"}})
    for sub in ("score_cer", "score_wer"):
        _write_score(exp, "en", sub, 0.0)
    out = tmp_path / "RESULTS.md"
    argv = ["--out", str(out), "--system", f"dense={exp}", "--langs", "en", "--no_claims",
            "--voice_data", str(data)]
    assert make_results.main(argv) == 0
    md = out.read_text(encoding="utf-8")
    assert "## Test error by kind of voice" in md
    assert "| dense | flite/festival (a recorded person) | 0.0 (2) |" in md
    assert "| dense | espeak-ng variants | 0.0 (1) |" in md
    (data / "utt2lang").unlink()
    assert make_results.main(argv) == 1
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "utt2lang: missing" in errors[0].getMessage()
    assert "Traceback" not in caplog.text
    assert out.read_text(encoding="utf-8") == md  # the earlier RESULTS.md is kept
