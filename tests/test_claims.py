"""Compute table, paired significance tests and the paper-claims table of RESULTS.md,
on fabricated score directories and exp dirs (no training, a few seconds)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest

from helpers import write_dev_losses

from espnet_pathways.bin import make_results
from espnet_pathways.reporting import claims as C
from espnet_pathways.reporting import compute_table as K
from espnet_pathways.reporting import significance as G
from espnet_pathways.reporting.scoring import score, write_score_dir

LANGS = ["en", "it"]
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


def refs(lang: str, n: int = 60) -> Dict[str, str]:
    rng = random.Random(lang)
    return {f"{lang}_spk{i % 5}-u{i:03d}": " ".join(rng.choice(WORDS) for _ in range(8))
            for i in range(n)}


def corrupt(text: str, rate: float, seed: str) -> str:
    rng = random.Random(seed)
    return " ".join(w if rng.random() >= rate else "oops" for w in text.split())


def write_system(exp: Path, name: str, rate: float, seed: str = "", langs=LANGS,
                 drop: str = "") -> Path:
    """Score dirs of a system whose hypotheses have about ``rate`` word substitutions."""
    for lang in langs:
        ref = refs(lang)
        hyp = {u: corrupt(t, rate, f"{seed or name}{u}") for u, t in ref.items()}
        if drop:
            ref = {u: t for u, t in ref.items() if u != drop}
            hyp = {u: t for u, t in hyp.items() if u != drop}
        write_score_dir(score(ref, hyp, "word"),
                        exp / f"asr_{name}" / "decode_streaming" / f"test_{lang}" / "score_wer")
    return exp / f"asr_{name}"


def write_compute(exp: Path, run: str, steps: int, per_lang: Dict[str, int]) -> None:
    d = exp / run
    d.mkdir(parents=True, exist_ok=True)
    (d / "compute.json").write_text(json.dumps({
        "steps": steps, "steps_per_lang": per_lang,
        "utts_per_lang": {k: 10 * v for k, v in per_lang.items()}, "epochs": 1}))


def write_sources(exp: Path, system: str, sources: List[str]) -> None:
    d = exp / f"asr_{system}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "compute_sources").write_text("".join(s + "\n" for s in sources))


# ---------------------------------------------------------------- compute table
def test_compute_sums_sources_and_extra_steps(tmp_path: Path):
    write_compute(tmp_path, "asr_dense", 3000, {"en": 2000, "it": 1000})
    write_compute(tmp_path, "asr_lsp_imp_en", 120, {"en": 120})
    write_compute(tmp_path, "asr_lsp_imp_it", 120, {"it": 120})
    write_compute(tmp_path, "asr_pathways_imp", 240, {"en": 200, "it": 40})
    write_sources(tmp_path, "dense", ["asr_dense"])
    write_sources(tmp_path, "pathways_imp",
                  ["asr_dense", "asr_lsp_imp_en", "asr_lsp_imp_it", "asr_pathways_imp"])
    write_sources(tmp_path, "broken", ["asr_dense", "asr_missing_run"])
    (tmp_path / "asr_old").mkdir()
    comp = K.load_compute([(s, tmp_path / f"asr_{s}") for s in ("dense", "pathways_imp", "broken", "old")])
    p = comp["pathways_imp"]
    assert p.steps == 3480 and p.steps_per_lang == {"en": 2320, "it": 1160}
    assert p.utts_per_lang == {"en": 23200, "it": 11600}
    assert K.extra_steps(p, comp["dense"]) == 480
    assert K.extra_steps(comp["dense"], comp["dense"]) == 0
    assert not comp["broken"].known and "asr_missing_run" in comp["broken"].why_na
    assert not comp["old"].known
    header, rows = K.compute_rows(comp, LANGS, "dense")
    by = {r[0]: r for r in rows}
    assert by["pathways_imp"][1:5] == ["3480", "480", "2320", "1160"]
    assert by["old"][1:3] == ["n/a", "n/a"] and by["broken"][2] == "n/a"


def test_compute_json_malformed_is_named(tmp_path: Path):
    (tmp_path / "asr_x").mkdir()
    (tmp_path / "asr_x" / "compute.json").write_text('{"steps": -1}')
    write_sources(tmp_path, "y", ["asr_x"])
    with pytest.raises(K.ComputeInputError, match="asr_x/compute.json"):
        K.system_compute("y", tmp_path / "asr_y")


# ---------------------------------------------------------------- significance
def test_bootstrap_identical_and_clearly_different():
    rng = np.random.default_rng(1)
    n = [np.full(200, 10), np.full(100, 10)]
    e = [rng.binomial(10, 0.3, 200), rng.binomial(10, 0.3, 100)]
    same = G.paired_bootstrap(e, e, n, resamples=500)
    assert same.rel_diff == 0 and same.p_value == 1.0
    better = [rng.binomial(10, 0.1, 200), rng.binomial(10, 0.1, 100)]
    diff = G.paired_bootstrap(better, e, n, resamples=500)
    assert diff.rel_diff < -50 and diff.p_value < 0.01
    assert diff.ci_low < diff.rel_diff < diff.ci_high < 0
    again = G.paired_bootstrap(better, e, n, resamples=500)
    assert again == diff  # fixed seed: deterministic


def test_mapsswe_and_pairing(tmp_path: Path):
    good = write_system(tmp_path, "good", 0.05)
    bad = write_system(tmp_path, "bad", 0.5)
    twin = write_system(tmp_path, "twin", 0.05, seed="good")
    sets = {n: [G.load_scored(d / "decode_streaming" / f"test_{lang}" / "score_wer", lang)
                for lang in LANGS] for n, d in (("good", good), ("bad", bad), ("twin", twin))}
    if G.find_sc_stats() is None or G.find_sclite() is None:
        pytest.skip("sctk (sclite, sc_stats) not installed")
    pe = G.paired_errors(sets["good"], sets["bad"])
    z, p = pe.mapsswe
    assert p < 0.05 and z < 0 and pe.scorer == "sclite"
    # sclite's per-utterance errors add up to its score.json totals
    for lang, errs, d in zip(LANGS, pe.errs_b, [bad] * 2):
        total = json.loads((d / "decode_streaming" / f"test_{lang}" / "score_wer" / "score.json").read_text())
        assert int(errs.sum()) == total["err"]
    z, p = G.paired_errors(sets["good"], sets["twin"]).mapsswe
    assert z == 0 and p == pytest.approx(1.0)
    short = write_system(tmp_path, "short", 0.05, drop="it_spk3-u003")
    s = G.load_scored(short / "decode_streaming" / "test_it" / "score_wer", "it")
    with pytest.raises(G.PairingError, match="it_spk3-u003"):
        G.check_paired(sets["good"][1], s, "good", "short")


# ---------------------------------------------------------------- verdict rule
@pytest.mark.parametrize("rel,p,ci,target,expected", [
    (-6.0, 0.01, (-9.0, -3.0), -5.0, C.REPRODUCED),
    (-4.0, 0.01, (-7.0, -1.0), -5.0, C.REPRODUCED),        # the paper's number within reach
    (-2.0, 0.01, (-3.5, -0.5), -5.0, C.NOT_REPRODUCED),    # significantly smaller gain
    (+3.0, 0.01, (+1.0, +5.0), -5.0, C.NOT_REPRODUCED),    # opposite direction, significant
    (-3.0, 0.30, (-8.0, +2.0), -5.0, C.INCONCLUSIVE),
    (-3.0, 0.01, (-5.0, -1.0), None, C.REPRODUCED),
    (+1.0, 0.40, (-2.0, +4.0), None, C.INCONCLUSIVE),
])
def test_verdict_better(rel, p, ci, target, expected):
    boot = G.BootstrapResult(rel, ci[0], ci[1], p, 100)
    assert C.verdict_better(rel, p, boot, target) == expected


def test_no_paired_test_is_inconclusive(tmp_path: Path):
    exp = tmp_path / "exp"
    for name in ("dense", "pathways_imp"):  # score.json only: no trn files to pair
        for lang in LANGS:
            d = exp / f"asr_{name}" / "decode_streaming" / f"test_{lang}" / "score_wer"
            d.mkdir(parents=True)
    r = C.evaluate(C.paper_claims("dense", [])[0], {n: exp / f"asr_{n}" for n in ("dense", "pathways_imp")},
                   {"dense": {"en": 30.0, "it": 30.0}, "pathways_imp": {"en": 29.0, "it": 29.0}},
                   LANGS, "decode_streaming", {})
    assert r.verdict == C.INCONCLUSIVE and "no ref.trn" in r.note and r.rel_diff == pytest.approx(-100 / 30)


def test_verdict_as_good_less_compute():
    assert C.verdict_as_good(-1.0, 0.5, 100, 200)[0] == C.REPRODUCED
    assert C.verdict_as_good(+1.0, 0.5, 100, 200)[0] == C.INCONCLUSIVE
    assert C.verdict_as_good(+5.0, 0.01, 100, 200)[0] == C.NOT_REPRODUCED
    assert C.verdict_as_good(-5.0, 0.01, 300, 200)[0] == C.NOT_REPRODUCED
    assert C.verdict_as_good(-5.0, 0.01, None, 200)[0] == C.INCONCLUSIVE


def test_mask_specificity():
    identical = {"languages": ["a", "b"], "sparsity": {"a": 0.7, "b": 0.7},
                 "iou": {"a": {"a": 1, "b": 1.0}, "b": {"a": 1.0, "b": 1}}}
    assert C.mask_specificity(identical)[2] == pytest.approx(0.0)
    chance = C.chance_iou(0.7, 0.7)
    independent = json.loads(json.dumps(identical).replace("1.0", str(chance)))
    assert C.mask_specificity(independent)[2] == pytest.approx(1.0)
    assert C.mask_specificity(None) is None


# ---------------------------------------------------------------- RESULTS.md
def test_results_claims_table_end_to_end(tmp_path: Path, caplog):
    exp = tmp_path / "exp"
    systems = {"dense": 0.30, "dense_ft": 0.30, "lap": 0.45, "lsp_imp": 0.05,
               "pathways_imp": 0.10, "pathways_random": 0.60}
    for name, rate in systems.items():
        write_system(exp, name, rate, seed="dense" if name == "dense_ft" else "")
    write_compute(exp, "asr_dense", 3000, {"en": 2000, "it": 1000})
    write_compute(exp, "asr_pathways_imp", 240, {"en": 200, "it": 40})
    write_sources(exp, "dense", ["asr_dense"])
    write_sources(exp, "pathways_imp", ["asr_dense", "asr_pathways_imp"])
    overlap = tmp_path / "overlap.json"
    overlap.write_text(json.dumps({"languages": LANGS, "sparsity": {"en": 0.7, "it": 0.7},
                                   "iou": {"en": {"en": 1, "it": 0.9}, "it": {"en": 0.9, "it": 1}},
                                   "overlap": {"en": {"en": 1, "it": 0.95}, "it": {"en": 0.95, "it": 1}}}))
    out = tmp_path / "RESULTS.md"
    argv = ["--out", str(out), "--langs", ",".join(LANGS), "--reference_system", "dense",
            "--extra_reference", "dense_ft", "--overlap_json", str(overlap), "--bootstrap_resamples", "300", "--repo", str(tmp_path)]
    for name in systems:
        argv += ["--system", f"{name}={exp / f'asr_{name}'}"]
    assert make_results.main(argv) == 0
    text = out.read_text()
    table = text.split("## Results")[1].split("\n#")[0]
    assert "| Rel. Avg WER vs dense | Rel. Avg WER vs dense_ft |" in table
    assert "| (reference) | +0.0 % |" in table and "| +0.0 % | (reference) |" in table
    claims = text.split("## Paper claims")[1].split("\n## ")[0]
    rows = {ln.split(" | ")[0].lstrip("| "): ln for ln in claims.splitlines() if ln.startswith("| ")}
    assert "| reproduced | steps 3240 vs 3000 |" in rows["pathways beat dense"]
    # dense_ft has dense's very hypotheses: the same row as against dense
    dft = rows["pathways beat dense given the same extra steps (dense_ft)"]
    assert "pathways_imp vs dense_ft" in dft
    assert "| reproduced |" in rows["pathways beat LAP"]
    assert "| not reproduced |" in rows["pathways beat LSP on it (lower-resource)"]
    assert "| not reproduced |" in rows["random-mask pathways beat LAP"]
    assert "not run: pathways_dynamic" in rows["dynamic pathways at least as good as fixed, at less compute"]
    assert "| not reproduced |" in rows["LSP masks are language-specific"]  # IoU 0.9
    compute = text.split("## Training compute")[1].split("\n## ")[0]
    assert "| dense | 3000 | 0 | 2000 | 1000 |" in compute
    assert "| lap | n/a | n/a |" in compute


def test_results_without_any_new_inputs_does_not_crash(tmp_path: Path):
    exp = tmp_path / "exp"
    write_system(exp, "dense", 0.3)
    (exp / "asr_other").mkdir()  # no scores at all: n/a cells
    out = tmp_path / "R.md"
    assert make_results.main(["--out", str(out), "--langs", ",".join(LANGS),
                              "--system", f"dense={exp / 'asr_dense'}",
                              "--system", f"other={exp / 'asr_other'}",
                              "--system", f"lap={exp / 'asr_lap'}",  # listed, never trained
                              "--reference_system", "dense",
                              "--mask_drift", str(tmp_path / "absent.json"),
                              "--repo", str(tmp_path)]) == 0
    text = out.read_text()
    assert text.count("| not run |") == 7  # every claim (pathways, lap, ... absent)
    assert "## Mask drift" not in text


def test_results_unpaired_systems_fail_with_one_line(tmp_path: Path, caplog):
    exp = tmp_path / "exp"
    write_system(exp, "dense", 0.3)
    write_system(exp, "pathways_imp", 0.1, drop="en_spk2-u002")
    out = tmp_path / "R.md"
    out.write_text("earlier\n")
    rc = make_results.main(["--out", str(out), "--langs", ",".join(LANGS),
                            "--system", f"dense={exp / 'asr_dense'}",
                            "--system", f"pathways_imp={exp / 'asr_pathways_imp'}",
                            "--reference_system", "dense", "--repo", str(tmp_path)])
    assert rc == 1 and out.read_text() == "earlier\n"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "en_spk2-u002" in errors[0]


def test_claims_without_sctk_use_the_bootstrap(tmp_path: Path, monkeypatch):
    exp = tmp_path / "exp"
    write_system(exp, "dense", 0.3)
    write_system(exp, "pathways_imp", 0.1)
    monkeypatch.setenv("SCLITE", str(tmp_path / "no_sclite"))
    monkeypatch.setenv("SC_STATS", str(tmp_path / "no_sc_stats"))
    r = C.evaluate(C.paper_claims("dense", [])[0], {n: exp / f"asr_{n}" for n in ("dense", "pathways_imp")},
                   {"dense": {"en": 30.0, "it": 30.0}, "pathways_imp": {"en": 10.0, "it": 10.0}},
                   LANGS, "decode_streaming", {}, resamples=300)
    assert r.p_mapsswe is None and r.boot is not None and r.p == r.boot.p_value < 0.05
    assert r.verdict == C.REPRODUCED


def test_pathways_of_the_claims_is_chosen_on_dev_not_on_test(tmp_path: Path):
    """"pathways" = the pathway system with the lower dev loss at its decoded epoch (the
    last: the recipe decodes latest.pth), whatever the test WER."""
    exp = tmp_path / "exp"
    dirs = {"pathways_imp": write_system(exp, "pathways_imp", 0.30),  # worse on test
            "pathways_dynamic": write_system(exp, "pathways_dynamic", 0.05)}
    wer = {"pathways_imp": {"en": 30.0, "it": 30.0}, "pathways_dynamic": {"en": 5.0, "it": 5.0}}
    write_dev_losses(dirs["pathways_imp"], [42.0, 40.0, 40.5])  # decoded at its last epoch: 40.5
    write_dev_losses(dirs["pathways_dynamic"], [39.0, 41.0])  # best 39 is not decoded: 41
    assert C.resolve_pathways(wer, LANGS, dirs) == "pathways_imp"
    # --inference_model valid.loss.best.pth decodes the best epochs: 39 against 40
    assert C.resolve_pathways(wer, LANGS, dirs, epoch="best") == "pathways_dynamic"
    write_dev_losses(dirs["pathways_dynamic"], [41.0, 39.5])
    assert C.resolve_pathways(wer, LANGS, dirs) == "pathways_dynamic"
    (dirs["pathways_dynamic"] / "checkpoint.pth").unlink()  # no dev loss: left out
    assert C.resolve_pathways(wer, LANGS, dirs) == "pathways_imp"
    assert C.resolve_pathways({"pathways_imp": wer["pathways_imp"]}, LANGS, dirs) == "pathways_imp"
