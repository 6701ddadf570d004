"""The stage configs must build the dense model's architecture (config_check, check_configs).

Pure YAML comparisons (no espnet2 import) except the one test that checks the model-choice
defaults against ASRPathwaysTask's parser, and three short runs of ``pathways.sh`` that
stop at the check or train nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import List, Tuple

import pytest
import yaml

from espnet_pathways.bin._cli import run
from espnet_pathways.bin.check_configs import main
from espnet_pathways.config_check import (
    CHOICE_DEFAULTS,
    LAYER_SWITCHES,
    MISSING,
    architecture_differences,
    load_config,
)

ROOT = Path(__file__).resolve().parents[1]  # (helpers.ROOT, without importing torch)
#: In a recipe's conf dir: the dense config, the configs of the stages that start from it
#: (pathways.sh --prune_config, --lap_config, --pathways_config; the add-language config
#: defaults to the first), and those that need not share its architecture.
DENSE = "train_dense.yaml"
DERIVED = ("prune_lsp.yaml", "prune_lap.yaml", "train_pathways.yaml")
EXEMPT = {
    "train_dense_small.yaml",        # a smaller model trained from scratch
    "train_pathways_dynamic.yaml",   # overrides only (bin/dynamic_overrides checks it)
    "decode.yaml",                   # decoding options
    "train_lm.yaml",                 # the fusion LM (--use_lm true): another model
}
RECIPE_CONF_DIRS = [ROOT / "conf", *sorted(ROOT.glob("egs2/*/asr1/conf")),
                    *sorted(ROOT.glob("egs2/*/asr1/conf/tuning/conformer"))]
#: The smoke test's pairing (tests/test_recipe_smoke.py): train_tiny is the dense config.
TINY = ROOT / "tests" / "conf"
TINY_DERIVED = ("prune_tiny.yaml", "pathways_tiny.yaml")
TINY_EXEMPT = {"train_tiny_small.yaml", "dynamic_tiny.yaml", "lm_tiny.yaml", "decode_tiny.yaml"}
PATHWAYS_SH = ROOT / "egs2" / "TEMPLATE" / "asr_pathways" / "pathways.sh"


def shipped_pairs() -> List[Tuple[Path, Path]]:
    pairs = [(d / name, d / DENSE) for d in RECIPE_CONF_DIRS for name in DERIVED]
    return pairs + [(TINY / name, TINY / "train_tiny.yaml") for name in TINY_DERIVED]


def check(argv, capsys) -> Tuple[int, List[str]]:
    """Run the tool in this process: (exit status, its stderr lines)."""
    with pytest.raises(SystemExit) as e:
        run(main, list(argv) + ["--log_level", "ERROR"])
        raise SystemExit(0)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return e.value.code or 0, lines


def write(path: Path, cfg) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def dense_cfg():
    return load_config(ROOT / "conf" / DENSE)


@pytest.mark.parametrize("config,dense", shipped_pairs(),
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_stage_config_builds_its_dense_model(config, dense):
    assert architecture_differences(load_config(config), load_config(dense)) == []


def test_every_recipe_config_is_checked_or_exempt():
    """A new config in a recipe's conf dir must be paired above or exempted on purpose."""
    assert len(RECIPE_CONF_DIRS) >= 4  # conf/, two egs2 recipes, MLS conformer tuning
    for d, derived, exempt, dense in [(d, DERIVED, EXEMPT, DENSE) for d in RECIPE_CONF_DIRS] + [
            (TINY, TINY_DERIVED, TINY_EXEMPT, "train_tiny.yaml")]:
        names = {p.name for p in d.glob("*.yaml")}
        assert dense in names and set(derived) <= names, d
        assert names - set(derived) - exempt - {dense} == set(), d


def test_a_derived_config_with_another_subsampling_factor_is_one_line(tmp_path, capsys):
    cfg = load_config(ROOT / "conf" / "train_pathways.yaml")
    cfg["encoder_conf"]["input_conf"]["subsampling_factor"] = 6
    bad = write(tmp_path / "train_pathways.yaml", cfg)
    dense = ROOT / "conf" / DENSE
    code, lines = check(["--dense", str(dense), str(ROOT / "conf" / "prune_lsp.yaml"), str(bad)],
                        capsys)
    assert code == 1
    assert lines == [
        f"check_configs: error: {bad}: encoder_conf.input_conf.subsampling_factor is 6, the "
        f"dense config {dense} has 4; every stage after 5 starts from the dense model, so its "
        "architecture must match"]


@pytest.mark.parametrize("section,path,dense_value", [
    ("encoder", "encoder_conf.body_conf[0].hidden_size", 144),
    ("decoder", "decoder_conf.hidden_size", 128),
])
def test_another_hidden_size_is_reported_with_file_and_key(dense_cfg, tmp_path, capsys,
                                                            section, path, dense_value):
    cfg = load_config(ROOT / "conf" / "prune_lap.yaml")
    if section == "encoder":
        cfg["encoder_conf"]["body_conf"][0]["hidden_size"] = 256
    else:
        cfg["decoder_conf"]["hidden_size"] = 256
    bad = write(tmp_path / "prune_lap.yaml", cfg)
    diffs = architecture_differences(cfg, dense_cfg)
    assert [(d.path, d.value, d.dense_value) for d in diffs] == [(path, 256, dense_value)]
    dense = ROOT / "conf" / DENSE
    code, lines = check(["--dense", str(dense), str(bad)], capsys)
    assert code == 1 and len(lines) == 1
    assert f"{bad}: {path} is 256, the dense config {dense} has {dense_value};" in lines[0]


def test_dropout_and_training_hyperparameters_may_differ(dense_cfg, tmp_path, capsys):
    cfg = load_config(ROOT / "conf" / "train_pathways.yaml")
    block = cfg["encoder_conf"]["body_conf"][0]
    block.update(dropout_rate=0.3, att_dropout_rate=0.2, pos_wise_dropout_rate=0.2)
    cfg["encoder_conf"]["main_conf"]["pos_enc_dropout_rate"] = 0.0
    cfg["decoder_conf"].update(dropout_rate=0.0, embed_dropout_rate=0.3)
    cfg["model_conf"].update(auxiliary_ctc_weight=0.5, rnnt_loss_impl="torchaudio",
                             transducer_weight=0.7)
    cfg.update(specaug="specaug", specaug_conf={"num_time_mask": 10})
    cfg.update(optim="sgd", max_epoch=99, batch_bins=123, init="xavier_uniform")
    cfg["scheduler_conf"]["warmup_steps"] = 7
    assert architecture_differences(cfg, dense_cfg) == []
    ok = write(tmp_path / "train_pathways.yaml", cfg)
    code, lines = check(["--dense", str(ROOT / "conf" / DENSE), str(ok)], capsys)
    assert (code, lines) == (0, [])


def test_one_line_per_differing_file_with_its_first_difference(dense_cfg, tmp_path, capsys):
    a = load_config(ROOT / "conf" / "prune_lsp.yaml")
    a["frontend_conf"]["n_mels"] = 40
    a["joint_network_conf"]["joint_space_size"] = 64
    b = load_config(ROOT / "conf" / "train_pathways.yaml")
    b["encoder_conf"]["body_conf"][0]["conv_mod_kernel_size"] = 31
    paths = [write(tmp_path / "a.yaml", a), ROOT / "conf" / "prune_lap.yaml",
             write(tmp_path / "b.yaml", b)]
    code, lines = check(["--dense", str(ROOT / "conf" / DENSE)] + [str(p) for p in paths],
                        capsys)
    assert code == 1 and len(lines) == 2
    assert f"{paths[0]}: frontend_conf.n_mels is 40," in lines[0]
    assert "joint_space_size" not in lines[0]
    assert f"{paths[2]}: encoder_conf.body_conf[0].conv_mod_kernel_size is 31," in lines[1]


def test_missing_keys_choices_lists_and_layer_switches(dense_cfg):
    cfg = load_config(ROOT / "conf" / "train_pathways.yaml")
    assert "encoder" not in dense_cfg
    assert architecture_differences({**cfg, "encoder": "conformer"}, dense_cfg) == []
    (d,) = architecture_differences({**cfg, "encoder": "emformer"}, dense_cfg)
    assert (d.path, d.value, d.dense_value) == ("encoder", "emformer", "conformer")

    del cfg["joint_network_conf"]
    (d,) = architecture_differences(cfg, dense_cfg)
    assert d.path == "joint_network_conf" and d.value is MISSING
    assert "joint_network_conf is not set, the dense config" in d.describe("x.yaml", "d.yaml")

    cfg = load_config(ROOT / "conf" / "train_pathways.yaml")
    cfg["encoder_conf"]["body_conf"].append(dict(cfg["encoder_conf"]["body_conf"][0]))
    (d,) = architecture_differences(cfg, dense_cfg)
    assert d.path == "encoder_conf.body_conf[1]" and d.dense_value is MISSING
    assert "the dense config d.yaml does not set it" in d.describe("x.yaml", "d.yaml")

    cfg = load_config(ROOT / "conf" / "train_pathways.yaml")
    cfg["encoder_conf"]["input_conf"]["vgg_like"] = 0  # false is not 0 in YAML's eyes here
    assert [d.path for d in architecture_differences(cfg, dense_cfg)] == [
        "encoder_conf.input_conf.vgg_like"]

    cfg = load_config(ROOT / "conf" / "train_pathways.yaml")
    cfg["model_conf"]["auxiliary_ctc_weight"] = 0.0  # the dense model has the CTC layer
    (d,) = architecture_differences(cfg, dense_cfg)
    assert d.path == "model_conf.auxiliary_ctc_weight" and "CTC output layer" in d.note
    cfg["model_conf"]["auxiliary_lm_loss_weight"] = 0.0  # off in both: no difference
    assert len(architecture_differences(cfg, dense_cfg)) == 1


@pytest.mark.parametrize("text,why", [
    ("encoder_conf: [unclosed\n", "not valid YAML at line"),
    ("", "not a YAML mapping of options (got an empty file)"),
    ("- a\n- b\n", "not a YAML mapping of options (got a list)"),
    (None, "no such config file"),
])
def test_unreadable_config_is_one_line_naming_the_file(tmp_path, capsys, text, why):
    bad = tmp_path / "stage.yaml"
    if text is not None:
        bad.write_text(text, encoding="utf-8")
    for argv in (["--dense", str(ROOT / "conf" / DENSE), str(bad)],  # a stage config
                 ["--dense", str(bad), str(ROOT / "conf" / "prune_lsp.yaml")]):  # the dense
        code, lines = check(argv, capsys)
        assert code == 1 and len(lines) == 1, lines
        assert lines[0].startswith(f"check_configs: error: {bad}: {why}"), lines[0]
        assert "Traceback" not in lines[0]


def test_command_line_entry_point(tmp_path):
    """``python -m`` as pathways.sh runs it: silent on stdout, an info line, exit 0."""
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_pathways.bin.check_configs", "--dense",
         "conf/train_dense.yaml", "conf/prune_lsp.yaml", "conf/prune_lap.yaml",
         "conf/train_pathways.yaml"],
        cwd=ROOT, text=True, capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr.count("\n") == 1
    assert "matches the dense config conf/train_dense.yaml" in proc.stderr


def recipe_with_bad_pathways_config(tmp_path: Path) -> Path:
    d = tmp_path / "recipe"
    (d / "conf").mkdir(parents=True)
    for p in (ROOT / "conf").glob("*.yaml"):
        (d / "conf" / p.name).write_text(p.read_text(encoding="utf-8"), encoding="utf-8")
    cfg = load_config(d / "conf" / "train_pathways.yaml")
    cfg["encoder_conf"]["body_conf"][0]["hidden_size"] = 256
    write(d / "conf" / "train_pathways.yaml", cfg)
    return d


def run_recipe(d: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(["bash", str(PATHWAYS_SH), "--languages", "en nl",
                           "--python", sys.executable, *args],
                          cwd=d, text=True, capture_output=True, env=env, timeout=120)


def test_pathways_sh_stops_before_any_stage_on_a_mismatch(tmp_path):
    """Started at stage 7, the run still checks the pathway config (stage 10) first."""
    d = recipe_with_bad_pathways_config(tmp_path)
    proc = run_recipe(d, "--stage", "7")
    assert proc.returncode == 1
    assert "conf/train_pathways.yaml: encoder_conf.body_conf[0].hidden_size is 256" in proc.stderr
    assert "Stage 7" not in proc.stdout and not list((d / "exp").glob("asr_*"))


def test_pathways_sh_checks_only_the_configs_the_selected_stages_use(tmp_path):
    d = recipe_with_bad_pathways_config(tmp_path)
    # stage 17 (upload, no --hf_repo) trains nothing; with --systems dense, nor does 10
    for args in (["--stage", "17", "--stop_stage", "17"],
                 ["--stage", "10", "--stop_stage", "10", "--systems", "dense"]):
        proc = run_recipe(d, *args)
        assert proc.returncode == 0, proc.stderr
        assert "check_configs" not in proc.stdout + proc.stderr


def test_choice_defaults_are_the_task_parsers():
    """CHOICE_DEFAULTS and the layer switches' "off" are ASRPathwaysTask's defaults."""
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    parser = ASRPathwaysTask.get_parser()
    for key, default in CHOICE_DEFAULTS.items():
        assert parser.get_default(key) == default, key
    model_conf = parser.get_default("model_conf")
    for key in LAYER_SWITCHES:
        assert not model_conf[key], key
