"""Bad input to the reporting bins (score, make_results, make_plots): one error line that
names the file, system, language or utterance at fault, exit status 1, no traceback, and
the outputs of an earlier complete run left as they were."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import torch

from espnet_pathways.bin import make_plots, make_results, score as score_cli
from espnet_pathways.masks import PathwayMasks

ROOT = Path(__file__).resolve().parents[1]


def write_text(path: Path, d: Dict[str, str]) -> Path:
    path.write_text("".join(f"{k} {v}".rstrip() + "\n" for k, v in d.items()), encoding="utf-8")
    return path


def snapshot(d: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def error_lines(caplog) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def run_bin(module: str, args: List[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=300)


# ---------------------------------------------------------------- score
@pytest.fixture()
def scored(tmp_path: Path):
    """A complete earlier score directory and the files it was made from."""
    ref = write_text(tmp_path / "ref", {"a-1": "ciao mondo", "a-2": "hello world"})
    hyp = write_text(tmp_path / "hyp", {"a-1": "ciao", "a-2": "hello world"})
    out = tmp_path / "score_wer"
    assert score_cli.main(["--ref", str(ref), "--hyp", str(hyp), "--out_dir", str(out), "--no_sclite"]) == 0
    return ref, hyp, out, snapshot(out)


@pytest.mark.parametrize("case", ["missing_ref", "stray_hyp", "duplicate_id", "unknown_lang", "bad_id"])
def test_score_bad_input(scored, tmp_path: Path, caplog, case: str):
    ref, hyp, out, before = scored
    argv = ["--ref", str(ref), "--hyp", str(hyp), "--out_dir", str(out), "--no_sclite"]
    if case == "missing_ref":
        argv[1], culprit = str(tmp_path / "nope" / "text"), str(tmp_path / "nope" / "text")
    elif case == "stray_hyp":
        write_text(hyp, {"a-1": "ciao", "zz-9": "x"})
        culprit = "zz-9"
    elif case == "duplicate_id":
        hyp.write_text("a-1 ciao\na-1 mondo\n", encoding="utf-8")
        culprit = str(hyp)
    elif case == "unknown_lang":
        (tmp_path / "utt2lang").write_text("a-1 it\na-2 en\n")
        argv += ["--utt2lang", str(tmp_path / "utt2lang"), "--lang", "nl"]
        culprit = "'nl'"
    else:
        write_text(ref, {"a-1": "ciao mondo", "a(2)": "hello world"})
        write_text(hyp, {"a-1": "ciao"})
        culprit = "'a(2)'"
    with caplog.at_level(logging.INFO):
        assert score_cli.main(argv) == 1
    errors = error_lines(caplog)
    assert len(errors) == 1 and culprit in errors[0], errors
    assert snapshot(out) == before


def test_score_bin_exit_status_and_no_traceback(tmp_path: Path):
    ref = write_text(tmp_path / "ref", {"a-1": "x"})
    proc = run_bin("espnet_pathways.bin.score", ["--ref", str(ref), "--hyp", str(tmp_path / "hyp"),
                                                 "--out_dir", str(tmp_path / "s"), "--no_sclite"])
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and str(tmp_path / "hyp") in proc.stderr
    assert not (tmp_path / "s" / "score.json").exists()


# ---------------------------------------------------------------- make_results
def write_score(exp: Path, lang: str, sub: str, payload) -> Path:
    d = exp / "decode_streaming" / f"test_{lang}" / sub
    d.mkdir(parents=True, exist_ok=True)
    (d / "score.json").write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return d / "score.json"


GOOD = {"unit": "word", "n_utt": 2, "n_ref": 10, "cor": 8, "sub": 1, "del": 1, "ins": 0, "err": 2,
        "error_rate": 20.0, "sentence_error_rate": 50.0, "missing": 0, "scorer": "sclite"}


@pytest.fixture()
def results(tmp_path: Path):
    exp = tmp_path / "exp" / "dense"
    for sub in ("score_wer", "score_cer"):
        write_score(exp, "en", sub, GOOD)
    out = tmp_path / "RESULTS.md"
    argv = ["--out", str(out), "--system", f"dense={exp}", "--langs", "en"]
    assert make_results.main(argv) == 0
    return exp, out, argv, out.read_bytes()


@pytest.mark.parametrize("case", ["not_json", "lacks_keys", "stage_times", "config", "rtf",
                                  "compute", "mask_drift", "masks"])
def test_make_results_bad_input(results, tmp_path: Path, caplog, case: str):
    exp, out, argv, before = results
    if case == "not_json":
        bad = write_score(exp, "en", "score_wer", '{"error_rate": 2')
        culprits = ["system dense", "language en", str(bad)]
    elif case == "lacks_keys":
        bad = write_score(exp, "en", "score_cer", {"error_rate": 3.0})
        culprits = ["system dense", "language en", str(bad), "n_ref"]
    elif case == "stage_times":
        bad = tmp_path / "stage_times.tsv"
        bad.write_text("2026-01-01 10:00:00\t5\ttrain dense\t60\nhalf a line\n")
        argv = argv + ["--stage_times", str(bad)]
        culprits = [f"{bad}:2"]
    elif case == "config":
        bad = tmp_path / "train.yaml"
        bad.write_text("encoder: [conformer\n")
        argv = argv + ["--config", f"dense={bad}"]
        culprits = ["config dense", str(bad)]
    elif case == "compute":
        (exp / "compute_sources").write_text("dense\n")
        bad = exp / "compute.json"
        bad.write_text('{"steps": "many"}')
        culprits = [str(bad), "steps"]
    elif case == "mask_drift":
        bad = tmp_path / "mask_drift.json"
        bad.write_text("{start")
        argv = argv + ["--mask_drift", str(bad)]
        culprits = ["mask drift", str(bad)]
    elif case == "masks":
        bad = tmp_path / "lsp_imp.pth"
        bad.write_bytes(b"not a torch file")
        argv = argv + ["--masks", f"lsp_imp={bad}"]
        culprits = ["masks lsp_imp", str(bad)]
    else:
        bad = exp / "decode_streaming" / "test_en" / "rtf"
        bad.write_text("all 0.5 1.0 2.0\nall 0.5 one 2.0\n")
        culprits = ["system dense", f"{bad}:2"]
    with caplog.at_level(logging.INFO):
        assert make_results.main(argv) == 1
    errors = error_lines(caplog)
    assert len(errors) == 1 and all(c in errors[0] for c in culprits), errors
    assert "\n" not in errors[0]  # one line, even when torch's message is not
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


def test_make_results_bin_exit_status_and_no_traceback(results):
    exp, out, argv, before = results
    write_score(exp, "en", "score_wer", "not json")
    proc = run_bin("espnet_pathways.bin.make_results", argv)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "system dense, language en" in proc.stderr
    assert out.read_bytes() == before


# ---------------------------------------------------------------- make_plots
@pytest.fixture()
def plotted(tmp_path: Path):
    masks = tmp_path / "lsp_imp.pth"
    g = torch.Generator().manual_seed(0)
    PathwayMasks({lang: {"decoder.w.weight": torch.rand(4, 4, generator=g) < 0.5}
                  for lang in ("en", "fr")}).save(masks)
    out = tmp_path / "plots"
    assert make_plots.main(["--out_dir", str(out), "--masks", str(masks)]) == 0
    return masks, out, snapshot(out)


@pytest.mark.parametrize("case", ["damaged_masks", "missing_masks", "bad_score"])
def test_make_plots_bad_input(plotted, tmp_path: Path, caplog, case: str):
    masks, out, before = plotted
    argv = ["--out_dir", str(out), "--masks", str(masks)]
    if case == "damaged_masks":
        masks.write_bytes(masks.read_bytes()[:100])
        culprits = [str(masks)]
    elif case == "missing_masks":
        argv[-1] = culprit = str(tmp_path / "none.pth")
        culprits = [culprit]
    else:
        bad = tmp_path / "exp" / "asr_dense" / "decode_streaming" / "test_fr" / "score_wer" / "score.json"
        bad.parent.mkdir(parents=True)
        bad.write_text("{}")
        argv += ["--results_dir", str(tmp_path / "exp"), "--systems", "dense", "--langs", "fr"]
        culprits = ["system dense", "language fr", str(bad)]
    with caplog.at_level(logging.INFO):
        assert make_plots.main(argv) == 1
    errors = error_lines(caplog)
    assert len(errors) == 1 and all(c in errors[0] for c in culprits), errors
    assert snapshot(out) == before


def test_make_plots_bin_exit_status_and_no_traceback(plotted):
    masks, out, before = plotted
    masks.write_bytes(b"not a torch file")
    proc = run_bin("espnet_pathways.bin.make_plots", ["--out_dir", str(out), "--masks", str(masks)])
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and str(masks) in proc.stderr
    assert snapshot(out) == before


def test_concurrent_writers_of_one_score_dir_or_plots_dir_are_refused(scored, plotted, caplog):
    from espnet_pathways.fileio import exclusive_lock

    ref, hyp, out, before = scored
    with exclusive_lock(out), caplog.at_level(logging.INFO):
        assert score_cli.main(["--ref", str(ref), "--hyp", str(hyp), "--out_dir", str(out), "--no_sclite"]) == 1
    assert snapshot(out) == before
    masks, plots_dir, plots_before = plotted
    with exclusive_lock(plots_dir):
        assert make_plots.main(["--out_dir", str(plots_dir), "--masks", str(masks)]) == 1
    assert snapshot(plots_dir) == plots_before
    errors = error_lines(caplog)
    assert len(errors) == 2 and all("another run" in e for e in errors), errors


def test_verbose_raises_the_error_for_its_traceback(tmp_path: Path, caplog):
    """--verbose (every reporting bin, through _cli.log_input_errors): the error itself,
    not the logged line, so that its traceback shows."""
    ref = write_text(tmp_path / "ref", {"a-1": "x"})
    argv = ["--ref", str(ref), "--hyp", str(tmp_path / "hyp"), "--out_dir", str(tmp_path / "s"),
            "--no_sclite"]
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "hyp")):
        score_cli.main(argv + ["--verbose"])
    with caplog.at_level(logging.INFO):
        assert score_cli.main(argv) == 1
    assert len(error_lines(caplog)) == 1
