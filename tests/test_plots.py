"""espnet_pathways.bin.make_plots on fake masks, score files and ESPnet training images."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from espnet_pathways.bin import make_plots
from espnet_pathways.reporting import plots
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
    groups = plots.group_params(list(SHAPES))
    assert list(groups) == ["encoder.embed", "encoder.block0", "encoder.block1", "decoder",
                            "joint_network", "ctc_lin"]
    assert plots.layer_group("encoder.encoders.blocks.12.feed_forward.w_1.weight") == "encoder.block12"
    order = plots.group_params([f"encoder.encoders.blocks.{i}.w" for i in (10, 2, 1)])
    assert list(order) == ["encoder.block1", "encoder.block2", "encoder.block10"]


def test_group_stats_match_masks(tmp_path):
    pm = fake_masks(tmp_path / "m.pth")
    groups = plots.group_params(pm.param_names)
    sparsity, overlap = plots.group_stats(pm, groups)
    m = pm.for_language("fr")["decoder.rnn.0.weight_ih_l0"]
    assert sparsity["decoder"]["fr"] == pytest.approx(1 - m.float().mean().item())
    for g in groups:
        assert overlap[g]["en"]["it"] == pytest.approx(1.0)
        assert overlap[g]["fr"]["fr"] == pytest.approx(1.0)
        assert 0.0 <= overlap[g]["en"]["nl"] <= 1.0
    # one group holding everything = the whole-model overlap of PathwayMasks
    _, whole = plots.group_stats(pm, {"all": pm.param_names})
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
    for name in ("masks_lsp_imp_overlap.png", "masks_lsp_imp_sparsity.png", "wer_test.png",
                 "training/asr_dense/loss.png"):
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
