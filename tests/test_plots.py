"""espnet_pathways.bin.make_plots on fake masks, score files and ESPnet training images."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from espnet_pathways.bin import make_plots, make_results
from espnet_pathways.reporting import mask_overlap
from espnet_pathways.masks import PathwayMasks

LANGS = ["en", "fr", "it", "nl"]
SHAPES = {
    "encoder.embed.conv.0.weight": (8, 1, 3, 3),
    "encoder.embed.output.weight": (16, 24),
    "encoder.encoders.blocks.0.self_att.linear_q.weight": (16, 16),
    "encoder.encoders.blocks.0.feed_forward.w_1.weight": (32, 16),
    "encoder.encoders.blocks.1.self_att.linear_q.weight": (16, 16),
    "encoder.encoders.blocks.1.conv_mod.pointwise_conv1.weight": (32, 16, 1),
    "decoder.rnn.0.weight_ih_l0": (64, 16),
    "joint_network.lin_enc.weight": (24, 16),
    "ctc_lin.weight": (10, 16),
}


def fake_masks(path: Path) -> PathwayMasks:
    g = torch.Generator().manual_seed(0)
    masks = {}
    for i, lang in enumerate(LANGS):
        masks[lang] = {n: torch.rand(s, generator=g) < (0.3 + 0.1 * i) for n, s in SHAPES.items()}
    masks["it"] = {n: m.clone() for n, m in masks["en"].items()}  # it == en: overlap 1
    pm = PathwayMasks(masks, {"method": "test"})
    pm.save(path)
    return pm


def write_score(exp: Path, sys: str, lang: str, wer: float) -> None:
    d = exp / f"asr_{sys}" / "decode_streaming" / f"test_{lang}" / "score_wer"
    d.mkdir(parents=True, exist_ok=True)
    (d / "score.json").write_text(json.dumps({"metric": "WER", "error_rate": wer}))


def test_layer_groups():
    groups = mask_overlap.group_params(list(SHAPES))
    assert list(groups) == ["encoder.embed", "encoder.block0", "encoder.block1", "decoder",
                            "joint_network", "ctc_lin"]
    assert mask_overlap.layer_group("encoder.encoders.blocks.12.feed_forward.w_1.weight") == "encoder.block12"
    order = mask_overlap.group_params([f"encoder.encoders.blocks.{i}.w" for i in (10, 2, 1)])
    assert list(order) == ["encoder.block1", "encoder.block2", "encoder.block10"]


def test_group_stats_match_masks(tmp_path):
    pm = fake_masks(tmp_path / "m.pth")
    groups = mask_overlap.group_params(pm.param_names)
    sparsity, overlap = mask_overlap.group_stats(pm, groups)
    m = pm.for_language("fr")["decoder.rnn.0.weight_ih_l0"]
    assert sparsity["decoder"]["fr"] == pytest.approx(1 - m.float().mean().item())
    for g in groups:
        assert overlap[g]["en"]["it"] == pytest.approx(1.0)
        assert overlap[g]["fr"]["fr"] == pytest.approx(1.0)
        assert 0.0 <= overlap[g]["en"]["nl"] <= 1.0
    # one group holding everything = the whole-model overlap of PathwayMasks
    _, whole = mask_overlap.group_stats(pm, {"all": pm.param_names})
    assert whole["all"]["fr"]["nl"] == pytest.approx(pm.overlap("fr", "nl"))


def test_make_plots_end_to_end(tmp_path):
    masks = tmp_path / "exp" / "masks" / "lsp_imp.pth"
    masks.parent.mkdir(parents=True)
    fake_masks(masks)
    exp = tmp_path / "exp"
    for k, sys in enumerate(["dense", "lap", "pathways_imp"]):
        for i, lang in enumerate(LANGS):
            if sys == "lap" and lang == "it":
                continue  # missing score: bar left out, table says n/a
            write_score(exp, sys, lang, 10.0 + i + 2 * k)
    img = exp / "asr_dense" / "images"
    img.mkdir(parents=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots()
    ax.plot([1, 2])
    fig.savefig(img / "loss.png")
    plt.close(fig)

    out = tmp_path / "plots"
    rc = make_plots.main(["--out_dir", str(out), "--masks", str(masks), "--results_dir", str(exp),
                          "--systems", "dense lap pathways_imp", "--langs", "en,fr,it,nl"])
    assert rc == 0
    for name in ("masks_lsp_imp_overlap.png", "masks_lsp_imp_iou.png", "masks_lsp_imp_sparsity.png",
                 "wer_test.png", "training/asr_dense/loss.png"):
        f = out / name
        assert f.is_file() and f.stat().st_size > 1000, name
        assert f.read_bytes()[:4] == b"\x89PNG"
    index = (out / "index.md").read_text()
    for name in ("masks_lsp_imp_overlap.png", "masks_lsp_imp_sparsity.png", "wer_test.png",
                 "training/asr_dense/loss.png"):
        assert f"]({name})" in index
    assert "| lap | 12.00 | 13.00 | n/a | 15.00 |" in index
    assert "| dense | 10.00 | 11.00 | 12.00 | 13.00 |" in index


def test_make_plots_errors(tmp_path):
    with pytest.raises(SystemExit):
        make_plots.main(["--out_dir", str(tmp_path)])
    assert make_plots.main(["--out_dir", str(tmp_path), "--masks", str(tmp_path / "none.pth")]) == 1
    # no score files at all: no WER figure, a note in the index instead
    assert make_plots.main(["--out_dir", str(tmp_path / "p"), "--results_dir", str(tmp_path),
                            "--systems", "dense", "--langs", "en"]) == 0
    assert not (tmp_path / "p" / "wer_test.png").exists()
    assert "No score files found" in (tmp_path / "p" / "index.md").read_text()


def test_group_iou_matches_masks(tmp_path):
    pm = fake_masks(tmp_path / "m.pth")
    langs, sparsity, overlap, iou = mask_overlap.mask_group_tables(tmp_path / "m.pth")
    assert list(iou)[:2] == [mask_overlap.ALL_WEIGHTS, "encoder.embed"]
    for a, b in mask_overlap.pairs(langs):
        assert iou[mask_overlap.ALL_WEIGHTS][a][b] == pytest.approx(pm.iou(a, b))
        assert iou["decoder"][a][b] == pytest.approx(iou["decoder"][b][a])
    assert iou["encoder.block1"]["en"]["it"] == pytest.approx(1.0)  # it is a copy of en
    m = pm.for_language("fr")["joint_network.lin_enc.weight"]
    assert sparsity["joint_network"]["fr"] == pytest.approx(1 - m.float().mean().item())


DRIFT = {"start": {"en-fr": 1.0, "en-it": 1.0}, "end": {"en-fr": 0.6, "en-it": "bad"},
         "groups": {"decoder": {"start": {"en-fr": 1.0}, "end": {"en-fr": 0.8}},
                    "encoder.block1": {"start": {"en-fr": 1.0}, "end": {"en-fr": 0.5}},
                    "junk": 3},
         "changed_fraction": {"en": 0.25, "fr": 0.5}, "revived": {"en": 12, "fr": 3}}


def test_mask_drift_read_defensively(tmp_path, caplog):
    p = tmp_path / "mask_drift.json"
    assert mask_overlap.load_mask_drift(p) is None
    p.write_text(json.dumps(DRIFT))
    drift = mask_overlap.load_mask_drift(p)
    assert list(drift) == [mask_overlap.ALL_WEIGHTS, "encoder.block1", "decoder"]
    assert drift[mask_overlap.ALL_WEIGHTS]["end"] == {"en-fr": 0.6}  # "bad" left out
    assert "not a number" in caplog.text
    p.write_text("{not json")
    with pytest.raises(ValueError, match="mask_drift.json"):
        mask_overlap.load_mask_drift(p)


def test_results_and_plots_show_groups_and_drift(tmp_path):
    exp = tmp_path / "exp"
    masks = exp / "masks" / "lsp_imp.pth"
    masks.parent.mkdir(parents=True)
    pm = fake_masks(masks)
    (exp / "asr_dense").mkdir()  # no scores: n/a cells
    drift = exp / "asr_pathways_dynamic" / "mask_drift.json"
    drift.parent.mkdir(parents=True)
    drift.write_text(json.dumps(DRIFT))
    out = tmp_path / "RESULTS.md"
    assert make_results.main(["--out", str(out), "--system", f"dense={exp / 'asr_dense'}",
                              "--langs", "en", "--masks", f"lsp_imp={masks}",
                              "--mask_drift", str(drift), "--no_claims", "--repo", str(tmp_path)]) == 0
    text = out.read_text()
    groups = text.split("## Mask overlap per layer group")[1].split("\n## ")[0]
    row = next(ln for ln in groups.splitlines() if ln.startswith("| all weights |"))
    assert f"| {pm.iou('en', 'fr'):.3f} |" in row and "IoU en-it" in groups
    assert "| encoder.block1 |" in groups and "| decoder |" in groups
    drift_md = text.split("## Mask drift (dynamic pathways)")[1].split("\n## ")[0]
    assert "| all weights | 1.000 -> 0.600 | 1.000 -> n/a |" in drift_md
    assert "| decoder | 1.000 -> 0.800 | n/a -> n/a |" in drift_md
    assert "| changed (1 - IoU start/end) | 25.0 % | 50.0 % |" in drift_md
    assert "| weights revived | 12 | 3 |" in drift_md
    assert "## Paper claims" not in text
    rc = make_plots.main(["--out_dir", str(tmp_path / "plots"), "--mask_drift", str(drift)])
    assert rc == 0 and (tmp_path / "plots" / "mask_drift.png").read_bytes()[:4] == b"\x89PNG"
    assert "mask_drift.png" in (tmp_path / "plots" / "index.md").read_text()
