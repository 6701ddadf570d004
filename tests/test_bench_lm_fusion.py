"""The LM-fusion benchmark runs on the tiny model with one tiny LM per language.

The figures are not asserted (speed lives in benchmarks, not tests); what is checked is
that it prints the three decodings and the cache's line, and that the cached and uncached
decodings are identical (it exits 1 otherwise).
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import soundfile
import torch
import yaml

from helpers import LANGS, TOKENS, tiny_args, tiny_model
from test_inference import tiny_lm

ROOT = Path(__file__).resolve().parents[1]


def test_bench_lm_fusion_prints_the_three_decodings(tmp_path, monkeypatch, capsys):
    torch.save(tiny_model().state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(dict(vars(tiny_args()))))
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    scp, langs = [], []
    for i, lang in enumerate(["en", "it", "en"]):
        wav = data / f"u{i}.wav"
        soundfile.write(wav, (rng.standard_normal(16000) * 0.1).astype("float32"), 16000)
        scp.append(f"u{i} {wav}\n")
        langs.append(f"u{i} {lang}\n")
    (data / "wav.scp").write_text("".join(scp))
    (data / "utt2lang").write_text("".join(langs))
    for seed, lang in enumerate(LANGS):  # the model's languages: each needs its LM
        tiny_lm(tmp_path / f"lm_{lang}", TOKENS, seed=seed)
    spec = importlib.util.spec_from_file_location(
        "bench_lm_fusion", ROOT / "benchmarks" / "bench_lm_fusion.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", [
        "bench_lm_fusion.py", "--asr_train_config", str(tmp_path / "config.yaml"),
        "--asr_model_file", str(tmp_path / "model.pth"),
        "--lm_train_config", str(tmp_path / "lm_{lang}/lm_config.yaml"),
        "--lm_file", str(tmp_path / "lm_{lang}/lm.pth"), "--data", str(data), "--n", "3",
        "--decoding_window", "320", "--beam_size", "2"])
    bench.main()
    out = capsys.readouterr().out
    for name in ("no LM", "LM, no cache", "LM, cache"):
        assert f"  {name} " in out, out
    assert "distinct prefixes (per utterance)" in out
    assert "identical: True" in out
