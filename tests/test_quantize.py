"""int8 deployment: dynamic quantization of the dense model, of the pathway model (per
language) and of one language's export; the stored int8 file; recognize in int8."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import soundfile
import torch
import yaml

from test_packing import CFG, MASKS, MODEL, recipe, results, s2t_from, speech  # noqa: F401

from espnet_pathways.quantize import (
    Int8FormatError,
    PathwayQuantizer,
    is_int8_file,
    load_int8,
    load_int8_into,
    quantize_model,
    quantize_model_file,
    quantized_modules_of,
    save_int8,
)

DENSE_CFG = "exp/asr_tiny/config_dense.yaml"


def in_dir(root: Path, fn, *args, **kw):
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return fn(*args, **kw)
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def dense_cfg(recipe):  # noqa: F811
    """The same weights read as a dense model (no pathway masks in the config)."""
    root, _ = recipe
    cfg = yaml.safe_load((root / CFG).read_text())
    cfg["pathway_masks"] = None
    (root / DENSE_CFG).write_text(yaml.safe_dump(cfg))
    return DENSE_CFG


@pytest.fixture(scope="module")
def export_it(recipe, tmp_path_factory):  # noqa: F811
    from espnet_pathways.bin.export_pathway import main as export

    root, _ = recipe
    out = tmp_path_factory.mktemp("export") / "export_it"
    info = in_dir(root, export, ["--asr_train_config", CFG, "--asr_model_file", MODEL,
                                 "--pathway_masks", MASKS, "--lang", "it", "--out_dir", str(out),
                                 "--quantize_asr_model", "true",
                                 "--quantize_modules", "Linear", "LSTM"])
    return out, info


def s2t(root, config, model_file, **kw):
    from espnet_pathways.inference import PathwaySpeech2Text

    return in_dir(root, PathwaySpeech2Text, asr_train_config=str(config),
                  asr_model_file=str(model_file), beam_size=2, decoding_window=320, **kw)


def assert_same_quantized_state(x: torch.nn.Module, y: torch.nn.Module) -> None:
    """Same int8 codes and scales, same float tensors (equal values)."""
    a, b = x.state_dict(), y.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        if k.endswith("_packed_params._packed_params"):
            assert torch.equal(a[k][0].int_repr(), b[k][0].int_repr()), k
            assert a[k][0].q_scale() == b[k][0].q_scale(), k
            assert (a[k][1] is None) == (b[k][1] is None), k
            assert a[k][1] is None or torch.equal(a[k][1], b[k][1]), k
        elif isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
    lstms = [n for n, m in x.named_modules() if isinstance(m, torch.ao.nn.quantized.dynamic.LSTM)]
    ys = dict(y.named_modules())
    for n in lstms:
        wa, wb = dict(x.named_modules())[n].get_weight(), ys[n].get_weight()
        assert wa.keys() == wb.keys()
        for w in wa:
            assert torch.equal(wa[w].int_repr(), wb[w].int_repr()), (n, w)
            assert wa[w].q_scale() == wb[w].q_scale(), (n, w)


def test_quantize_model_swaps_linear_layers_only_by_default():
    from helpers import tiny_model

    q = quantize_model(tiny_model().eval())
    names = quantized_modules_of(q)
    assert "joint_network.lin_out" in names and "decoder.rnn.0" not in names
    assert "decoder.rnn.0" in quantized_modules_of(quantize_model(tiny_model().eval(),
                                                                  ["Linear", "LSTM"]))
    with pytest.raises(ValueError, match="--quantize_modules GRU"):
        quantize_model(tiny_model(), ["GRU"])


def test_quantized_dense_model_decodes_and_its_int8_file_round_trips(recipe, dense_cfg, tmp_path):  # noqa: F811
    root, _ = recipe
    runtime = s2t(root, dense_cfg, MODEL, streaming=True, quantize_asr_model=True)
    assert "joint_network.lin_out" in quantized_modules_of(runtime.asr_model)

    int8 = tmp_path / "model.int8.pth"
    summary = in_dir(root, quantize_model_file, dense_cfg, MODEL, int8)
    assert is_int8_file(int8) and not is_int8_file(root / MODEL)
    assert summary["int8_mb"] < summary["float_mb"]
    stored = s2t(root, dense_cfg, int8, streaming=True)
    assert_same_quantized_state(runtime.asr_model, stored.asr_model)
    hyp = results(runtime, speech(3), "fr")
    assert hyp  # an n-best list (with its score) through the int8 model
    assert results(stored, speech(3), "fr") == hyp


def test_quantized_pathway_uses_each_languages_mask(recipe):  # noqa: F811
    root, masks = recipe
    q = s2t_from(recipe, streaming=False, quantize_asr_model=True)
    assert q.known_languages == masks.languages
    linears = {n: m for n, m in q.asr_model.named_modules() if hasattr(m, "_packed_params")}
    scales = {}
    for lang in ("en", "it"):
        q.set_language(lang)
        for n, m in masks.for_language(lang).items():
            module = n.rsplit(".", 1)[0]
            if module in linears:
                codes = linears[module].weight().int_repr()
                assert torch.all(codes[~m] == 0), (lang, n)
                scales[lang, module] = linears[module].weight().q_scale()
        assert q(speech(4), lang=lang) is not None
    # The scale is the language's own (W * m_l), not one of the union.
    assert any(scales["en", k] != scales["it", k] for _, k in scales if _ == "en")


def test_quantized_pathway_equals_the_quantized_export(recipe, export_it):  # noqa: F811
    root, masks = recipe
    out, info = export_it
    assert info["int8_model"] == str(out / "model.int8.pth")
    assert info["quantize_modules"] == ["Linear", "LSTM"]
    pathway = s2t_from(recipe, streaming=True, quantize_asr_model=True,
                       quantize_modules=["Linear", "LSTM"])
    export = s2t(root, out / "config.yaml", out / "model.int8.pth", streaming=True)
    pathway.set_language("it")
    assert "decoder.rnn.0" in quantized_modules_of(export.asr_model)
    assert_same_quantized_state(pathway.asr_model, export.asr_model)
    for seed in (6, 7):
        assert results(pathway, speech(seed), "it") == results(export, speech(seed), "it")


def test_int8_file_is_sparse_and_checked(recipe, export_it, tmp_path):  # noqa: F811
    from helpers import tiny_model

    root, masks = recipe
    out, _ = export_it
    float_state = torch.load(out / "model.pth", weights_only=True)
    state = load_int8(out / "model.int8.pth")
    # Mostly-zero tensors of the 70%-sparse pathway keep only their non-zero values.
    w = state["quantized"]["encoder.encoders.blocks.0.feed_forward.w_1"]["weights"]["weight"]["codes"]
    assert isinstance(w, dict) and w["values"].numel() <= masks.for_language("it")[
        "encoder.encoders.blocks.0.feed_forward.w_1.weight"].sum()
    assert (out / "model.int8.pth").stat().st_size < (out / "model.pth").stat().st_size / 2
    linear = "encoder.encoders.blocks.0.feed_forward.w_1"
    assert f"{linear}.weight" in float_state and f"{linear}.weight" not in state["tensors"]
    # A model of another architecture is refused, naming the file.
    other = quantize_model(tiny_model(encoder_conf={**yaml.safe_load(
        (root / CFG).read_text())["encoder_conf"], "body_conf": [
        {"block_type": "conformer", "hidden_size": 32, "linear_size": 64, "heads": 4,
         "conv_mod_kernel_size": 15, "num_blocks": 2}]}).eval())
    with pytest.raises(Int8FormatError, match="x.pth: quantized layers differ"):
        load_int8_into(other, state, where="x.pth")
    with pytest.raises(Int8FormatError, match="holds per-tensor qint8"):
        save_int8(quantize_model(tiny_model().eval(), quantize_dtype="float16"), tmp_path / "y.pth")
    assert not (tmp_path / "y.pth").exists()
    torch.save({"format": "something else"}, tmp_path / "z.pth")
    with pytest.raises(Int8FormatError, match="z.pth: not an espnet_pathways.int8_state_dict"):
        load_int8(tmp_path / "z.pth")


def test_quantizing_a_pathway_config_as_dense_is_refused(recipe, tmp_path):  # noqa: F811
    root, _ = recipe
    with pytest.raises(ValueError, match="quantized per language: export_pathway --lang"):
        in_dir(root, quantize_model_file, CFG, MODEL, tmp_path / "m.int8.pth")
    # The CLI raises the same input error (bin/_cli.run: one line, exit status 1).
    from espnet_pathways.bin.quantize_model import main as quantize_cli

    with pytest.raises(ValueError, match="quantized per language"):
        in_dir(root, quantize_cli, ["--asr_train_config", CFG, "--asr_model_file", MODEL,
                                    "--out", str(tmp_path / "m.int8.pth")])
    assert not (tmp_path / "m.int8.pth").exists()


def test_pathway_quantizer_matches_quantizing_the_baked_model(recipe):  # noqa: F811
    from helpers import tiny_model

    _, masks = recipe
    model = tiny_model().eval()
    pq = PathwayQuantizer(model, masks)
    baked = tiny_model().eval()
    from espnet_pathways.masks import apply_masks_

    apply_masks_(baked, masks.for_language("nl"))
    ref = quantize_model(baked).state_dict()
    got = pq.state_dict("nl")
    k = "joint_network.lin_enc._packed_params._packed_params"
    assert torch.equal(ref[k][0].int_repr(), got[k][0].int_repr())
    # the float model itself is left as it was
    assert torch.equal(dict(model.named_parameters())["joint_network.lin_enc.weight"],
                       dict(tiny_model().named_parameters())["joint_network.lin_enc.weight"])


def test_recognize_in_int8(recipe, export_it, tmp_path, capsys):  # noqa: F811
    from espnet_pathways.bin.recognize import main as recognize
    from espnet_pathways.packing import pack_model

    root, _ = recipe
    out, _ = export_it
    wav = tmp_path / "utt.wav"
    soundfile.write(wav, speech(11), 16000)
    # The multilingual pathway model, quantized at load time (ESPnet's option).
    text = in_dir(root, recognize, ["--asr_train_config", CFG, "--asr_model_file", MODEL,
                                    "--quantize_asr_model", "true", "--lang", "it",
                                    "--beam_size", "2", "--decoding_window", "320",
                                    "--search_type", "default", "--wav", str(wav)])
    expected = s2t_from(recipe, streaming=False, quantize_asr_model=True)
    assert text == (results(expected, speech(11), "it")[0][0] or "").strip()
    # The shipped file: the int8 export packed with ESPnet's packer, decoded from the zip.
    zip_path = tmp_path / "it_int8.zip"
    pack_model(out / "config.yaml", out / "model.int8.pth", zip_path, root=root)
    assert zip_path.stat().st_size < (root / MODEL).stat().st_size
    text_zip = recognize(["--model", str(zip_path), "--cachedir", str(tmp_path / "cache"),
                          "--lang", "it", "--beam_size", "2", "--decoding_window", "320",
                          "--search_type", "default", "--wav", str(wav)])
    assert text_zip == text
    capsys.readouterr()


def test_bench_deploy_writes_the_deployment_table(recipe, tmp_path, capsys):  # noqa: F811
    """The benchmark behind the recipe's deployment stage, on the tiny fixture."""
    import csv
    import importlib.util

    from helpers import ROOT

    root, _ = recipe
    spec = importlib.util.spec_from_file_location("bench_deploy",
                                                  ROOT / "benchmarks" / "bench_deploy.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)

    dense = root / "exp/asr_dense_tiny"
    dense.mkdir(exist_ok=True)
    cfg = yaml.safe_load((root / CFG).read_text())
    cfg["pathway_masks"] = None
    (dense / "config.yaml").write_text(yaml.safe_dump(cfg))
    (dense / "valid.loss.ave.pth").write_bytes((root / MODEL).read_bytes())
    data = tmp_path / "test"
    data.mkdir()
    utts = {"a1": "it", "a2": "it", "b1": "fr", "b2": "fr", "b3": "fr"}
    for i, k in enumerate(utts):
        soundfile.write(data / f"{k}.wav", speech(20 + i, 0.6), 16000)
    (data / "wav.scp").write_text("".join(f"{k} {data / k}.wav\n" for k in utts))
    (data / "utt2lang").write_text("".join(f"{k} {v}\n" for k, v in utts.items()))
    (data / "text").write_text("".join(f"{k} ciao a tutti\n" for k in utts))
    out = tmp_path / "deploy.tsv"
    rows = in_dir(root, bench.main, [
        "--system", "dense=exp/asr_dense_tiny", "--system", "pathways=exp/asr_tiny",
        "--data", str(data), "--langs", "it,fr", "--max_utts", "2",
        "--inference_model", "valid.loss.ave.pth", "--work_dir", str(tmp_path / "work"),
        "--out", str(out), "--beam_size", "2", "--decoding_window", "320"])
    assert [(r["system"], r["lang"], r["utts"]) for r in rows] == [
        ("dense", "it", 2), ("dense", "fr", 2), ("pathways", "it", 2), ("pathways", "fr", 2)]
    table = list(csv.DictReader(out.open(), delimiter="\t"))
    assert list(table[0]) == bench.COLUMNS and len(table) == 4
    for r in rows:
        assert r["int8_mb"] < r["fp32_mb"] and 0 < r["int8_vs_dense_fp32"] < 1
        assert 0 <= r["cer_int8"] and r["rtf_int8"] > 0
    assert rows[2]["int8_mb"] < rows[0]["int8_mb"]  # one sparse pathway < the dense int8
    assert (tmp_path / "work/pathways/export_it/int8.zip").is_file()
    assert "int8_vs_dense_fp32" in capsys.readouterr().out


def test_make_results_renders_the_deployment_table(tmp_path):
    from espnet_pathways.reporting.results import deploy_section

    tsv = tmp_path / "deploy.tsv"
    tsv.write_text(
        "system\tlang\tutts\tfp32_stored_as\tfp32_mb\tint8_stored_as\tint8_mb\tfp32_export_mb\t"
        "int8_vs_dense_fp32\tcer_fp32\tcer_int8\twer_fp32\twer_int8\trtf_fp32\trtf_int8\n"
        "dense\tit\t40\tdense\t7.6\tdense int8\t2.5\t\t0.33\t20.0\t20.4\t50.0\t51.0\t0.1\t0.08\n"
        "pw\tit\t40\tcompact\t3.5\texported it pathway, int8\t1.2\t7.6\t0.16\t19.0\t19.8\t"
        "48.0\t49.0\t0.1\t0.07\n"
        "pw\tfr\t40\tcompact\t3.5\texported fr pathway, int8\t1.1\t7.6\t0.14\t19.0\t21.0\t"
        "48.0\t49.0\t0.1\t0.07\n")
    md = deploy_section(tsv, 1)
    assert md.count("\n| ") == 3  # 3 rows after the header
    assert "| pw | it | 40 | compact | 3.50 | exported it pathway, int8 | 1.20 | 0.160 |" in md
    # fr's int8 is smaller but loses 2 CER points: the it export is the one to ship.
    assert "**pw, exported it pathway, int8** (1.20 MB, 0.160 of the dense fp32 zip" in md
