"""Smoke run of the whole recipe on a tiny corpus and tiny models: do the stages connect?

It runs the real ``egs2/TEMPLATE/asr_pathways/pathways.sh`` (every stage, the default
run's systems, a per-language LSP pruning interval as run.sh gives one) with two
languages, a few utterances each and models of a few thousand weights, in a scratch
recipe directory, then checks that RESULTS.md has every system's numbers, that the
compute of every system is recorded and matched, and that a rerun trains and decodes
nothing.

The systems behind options (dense_small, lsp_lth, pathways_lth) and the dev sweep of the
LSP interval are not in this run, to keep the test command within its 30 minutes: their
stage wiring is driven with a fake trainer (test_train_jobs.py), their training code by
test_trainer.py and test_dev_selection.py; decoding, scoring and reporting are the same
code for every system.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from helpers import ROOT

SYSTEMS = ["dense", "dense_ft", "lsp_imp", "lap",
           "pathways_imp", "pathways_random", "pathways_dynamic"]  # run.sh's default


def run(cmd, cwd, **kw):
    env = dict(os.environ, VENV=str(Path(sys.executable).parents[1]), PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, **kw)


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    d = tmp_path_factory.mktemp("recipe")
    for name in ("conf", "local", "egs2", "path.sh", "cmd.sh"):
        (d / name).symlink_to(ROOT / name)
    (d / "tconf").symlink_to(ROOT / "tests" / "conf")
    cmd = [
        "env", "OMP_NUM_THREADS=2",  # a lone training on 2 threads: 2 gloo ranks (--cpu_ranks 2)
        "bash", "egs2/TEMPLATE/asr_pathways/pathways.sh",
        "--languages", "en nl", "--nj", "2", "--nbpe", "30", "--cpu_ranks", "2",
        "--local_data_opts",
        "--langs en,nl --max_lines_per_lang 5 --voices_per_line 1 --extra_train_voices 0 "
        "--low_resource_lang none",
        "--dense_config", "tconf/train_tiny.yaml",
        "--dense_small_config", "tconf/train_tiny_small.yaml",
        "--prune_config", "tconf/prune_tiny.yaml", "--lap_config", "tconf/prune_tiny.yaml",
        "--pathways_config", "tconf/pathways_tiny.yaml",
        "--dynamic_config", "tconf/dynamic_tiny.yaml",
        "--systems", " ".join(SYSTEMS), "--lsp_prune_every", "en=1 nl=2",
        "--results", "RESULTS.md", "--deploy_max_utts", "2",
        "--use_lm", "true", "--lm_config", "tconf/lm_tiny.yaml",
        "--decode_config", "tconf/decode_tiny.yaml",
    ]
    proc = run(cmd, d, timeout=2400)  # a loaded 2-core machine: ~10 min
    (d / "run.log").write_text(proc.stdout + proc.stderr)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return d, cmd


def test_results_md_has_every_system_and_language(recipe):
    d, _ = recipe
    text = (d / "RESULTS.md").read_text()
    for system in SYSTEMS:
        row = next((line for line in text.splitlines() if line.startswith(f"| {system} |")), None)
        assert row is not None, f"no row for {system}"
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert "n/a" not in cells[1:9], row  # en/nl CER/WER, averages
    assert "## Mask overlap" in text and "## Stage timings" in text
    assert "## Sparsity and parameters" in text
    # stage 13 found data/test/spk2voice: every system's test CER per kind of voice
    kinds = text.split("## Test error by kind of voice", 1)[1].split("\n## ", 1)[0]
    for system in SYSTEMS:
        assert f"| {system} | espeak-ng variants |" in kinds, kinds


def test_lone_cpu_trainings_ran_as_two_gloo_ranks(recipe):
    """--cpu_ranks 2: the dense stage (a stage's only training, 2 threads) ran as two
    torch DDP ranks through torch.distributed.run and ESPnet's external-launcher mode."""
    d, _ = recipe
    assert "dense: 2 gloo DDP ranks of 1 thread(s) each (--cpu_ranks)" in (d / "run.log").read_text()
    assert re.search(r"\[\S+:0/2\]", (d / "exp/asr_dense/train.log").read_text())  # rank 0 of 2


def _batch_bins_packed_alike_by_one_and_two_ranks(d: Path, argv: list) -> int:
    """The smallest batch_bins from the run's own up (doubling) at which the language
    batches of one process and of 2 DDP ranks are the same.  Under DDP a batch must hold
    an utterance per rank, so the sampler merges a batch smaller than the world into its
    neighbour (ESPnet's numel sampler does the same with its min_batch_size): where the
    packings differ the utterance counts must differ too, whatever the trainer does."""
    from espnet_pathways.samplers import LanguageHomogeneousSampler

    def opt(name):
        return [argv[i + 1] for i, a in enumerate(argv) if a == name]

    config = yaml.safe_load((d / opt("--config")[0]).read_text())
    shape = str(d / opt("--train_shape_file")[0])
    category2utt = str((d / opt("--train_data_path_and_name_and_type")[0].split(",")[0])
                       .parent / "category2utt")
    bins = int(config["batch_bins"])
    while True:
        one, two = (LanguageHomogeneousSampler(bins, [shape], category2utt, min_batch_size=w)
                    for w in (1, 2))
        if one.packed == two.packed:
            return bins
        bins *= 2  # one batch per language, at the latest, packs alike


def test_a_pathway_training_runs_as_two_gloo_ranks(recipe):
    """The pathway stage's trainings share the cores as 1-thread jobs here, so one runs
    again as 2 gloo ranks: the command pathways.sh logged for pathways_dynamic (masks,
    language-homogeneous batches drawn anew each epoch, the per-language score all-reduce
    and mask re-derivation) through torchrun, in ESPnet's external-launcher mode.  It
    trains the steps and utterances per language of the same command run as one process
    (before session 9 a pathway run stopped at step 1: KeyError, a rank's dataset lacked
    its batches' keys).  Both runs get a batch_bins at which one and two ranks pack the
    same batches (see the helper above; session 24's corpus left a batch of one Dutch
    utterance at the recipe's own).  pathways_imp's fixed-mask run is the same command
    without the re-derivation; tests/test_ddp.py runs that kind as 2 ranks too."""
    d, _ = recipe
    system = "pathways_dynamic"
    log = (d / f"exp/asr_{system}/train.log").read_text().splitlines()
    header = next(line for line in log if line.startswith("===== "))
    argv = header.split(": ", 1)[1].rsplit(" =====", 1)[0].split()
    assert argv[1:3] == ["-m", "espnet_pathways.bin.asr_pathways_train"], argv[:3]
    bins = _batch_bins_packed_alike_by_one_and_two_ranks(d, argv)

    def args(name):
        out = list(argv[1:]) + ["--batch_bins", str(bins)]
        out[out.index("--output_dir") + 1] = f"exp/{name}_{system}"
        return out

    one_proc = run(["env", "OMP_NUM_THREADS=1", sys.executable, *args("one")], d, timeout=600)
    assert one_proc.returncode == 0, (one_proc.stdout + one_proc.stderr)[-4000:]
    proc = run(["env", "OMP_NUM_THREADS=1", sys.executable, "-m", "torch.distributed.run",
                "--standalone", "--nnodes", "1", "--nproc_per_node", "2", "--no-python",
                sys.executable, *args("ddp"), "--multiprocessing_distributed", "false",
                "--dist_backend", "gloo"], d, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert re.search(r"\[\S+:0/2\]", proc.stderr)  # rank 0 of 2
    one, two = (json.loads((d / f"exp/{x}_{system}/compute.json").read_text())
                for x in ("one", "ddp"))
    assert two == one
    assert two["steps_per_lang"]["nl"] > 0 and two["utts_per_lang"]["nl"] > 0


def test_masks_and_sparsity_reach_the_target(recipe):
    d, _ = recipe
    info = json.loads((d / "exp/asr_pathways_imp/system_info.json").read_text())
    for lang in ("en", "nl"):
        assert abs(info["sparsity"][lang] - 0.7) < 0.01
    assert info["params_kept"] < info["params_total"]
    from espnet_pathways.masks import PathwayMasks

    lap = PathwayMasks.load(d / "exp/asr_lap/masks.pth")
    assert lap.iou("en", "nl") == 1.0  # one mask for all languages


def test_plots_and_packed_model_are_written(recipe):
    d, _ = recipe
    index = (d / "exp/plots/index.md").read_text()
    assert ".png" in index
    zip_path = d / "exp/asr_pathways_imp/pathways_imp.zip"
    assert zip_path.stat().st_size > 0
    names = zipfile.ZipFile(zip_path).namelist()
    assert any(n.endswith("meta.yaml") for n in names)
    # --use_lm true: the zip carries each language's LM and the decoding config with its
    # weights
    meta = yaml.safe_load(zipfile.ZipFile(zip_path).read("meta.yaml"))
    assert meta["files"]["lm_file_nl"] == "lm/nl/valid.loss.best.pth", meta
    assert set(meta["yaml_files"]) == {"asr_train_config", "lm_train_config_en",
                                       "lm_train_config_nl", "decode_config"}


def test_every_system_is_decoded_with_the_fusion_lm(recipe):
    """--use_lm true: stage 3 trained an RNN LM per language (--lm_per_language true) on
    that language's training text with the ASR tokens, and stage 11 fused each into every
    system's beam search for the utterances of its language."""
    d, _ = recipe
    tokens = (d / "data/token_list/bpe_shared30/tokens.txt").read_text().split("\n")[:-1]
    for lang in ("en", "nl"):
        lm = d / f"exp/lm_shared30_{lang}"
        assert (lm / "valid.loss.best.pth").is_file() and (lm / ".done").is_file()
        assert yaml.safe_load((lm / "config.yaml").read_text())["token_list"] == tokens
        train = (lm / "data/train_text").read_text().splitlines()
        want = {line.split(" ", 1)[1] for line in
                (d / f"dump/raw/train_{lang}/text").read_text().splitlines()}
        assert {line.split(" ", 1)[1] for line in train} == want, lang
        # its shapes: one collect_stats for all languages, split by the keys of its texts
        shapes = (lm / "stats/train/text_shape.bpe").read_text().splitlines()
        assert sorted(s.split()[0] for s in shapes) == sorted(t.split()[0] for t in train)
        valid = (lm / "stats/valid/text_shape.bpe").read_text().splitlines()
        assert {s.split()[0] for s in valid} == set(
            (d / f"dump/raw/dev_{lang}/utt2lang").read_text().split()[::2]), lang
        assert not (lm / "collect_stats.log").exists()
    assert (d / "exp/lm_shared30_stats/collect_stats.log").is_file()
    assert not (d / "exp/lm_shared30").exists()
    for system in ("dense", "pathways_imp", "lsp_imp_nl"):
        log = (d / f"exp/asr_{system}/decode_streaming/test/logdir/decode.1.log").read_text()
        assert "LM fused: exp/lm_shared30_{lang}/valid.loss.best.pth, weight" in log, system
    assert "language's RNN LM (`exp/lm_shared30_<lang>/valid.loss.best.pth`) fused" in (
        d / "RESULTS.md").read_text()


def test_decoding_was_streaming_and_rerun_skips_done_work(recipe):
    d, cmd = recipe
    log = (d / "exp/asr_dense/decode_streaming/test/logdir/decode.1.log").read_text()
    assert "streaming=True" in log
    proc = run(cmd + ["--stage", "4", "--stop_stage", "13"], d, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "feature statistics: done already" in proc.stdout  # stage 4 reads no audio
    assert "Collecting feature statistics" not in proc.stdout
    assert "already trained with this config" in proc.stdout
    assert "decoded already; skipping" in proc.stdout
    # Nothing is trained or decoded again: stage 9 rewrites the same masks with the same
    # bytes, so the pathway systems that start from them are not retrained (session 13's
    # rerun retrained all of them: torch.save stored the temporary file's name).
    assert ": training with " not in proc.stdout, proc.stdout[-3000:]
    assert ": decoding " not in proc.stdout, proc.stdout[-3000:]


def test_systems_dense_reports_the_dense_model_alone(recipe):
    """``--systems dense`` (the dense-only run): stages 6-10 train nothing, and the dense
    model is decoded again without the LM."""
    d, cmd = recipe
    (d / "exp_dense").mkdir()  # stage 4's statistics are those of the main run
    (d / "exp_dense/asr_stats_shared30").symlink_to(d / "exp/asr_stats_shared30")
    # and its dense model (stage 5 is the main run's: not trained again here), with its
    # LM-fused decoding, which the run without the LM must not reuse
    shutil.copytree(d / "exp/asr_dense", d / "exp_dense/asr_dense", symlinks=True)
    # without the LM: the no-LM path of decoding, RESULTS.md and packing
    proc = run(cmd + ["--stage", "6", "--stop_stage", "15", "--systems", "dense",
                      "--expdir", "exp_dense", "--results", "RESULTS_dense.md",
                      "--use_lm", "false"], d, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert proc.stdout.count("skipped: no system in --systems (dense) needs it") == 5
    trained = sorted(p.name for p in (d / "exp_dense").glob("asr_*") if p.name != "asr_stats_shared30")
    assert trained == ["asr_dense"], trained
    meta = yaml.safe_load(zipfile.ZipFile(d / "exp_dense/asr_dense/dense.zip").read("meta.yaml"))
    assert "lm_file" not in meta["files"] and set(meta["yaml_files"]) == {"asr_train_config"}
    assert "dense: decoding " in proc.stdout  # decoded again, without the LM
    log = (d / "exp_dense/asr_dense/decode_streaming/test/logdir/decode.1.log").read_text()
    assert "LM fused" not in log
    text = (d / "RESULTS_dense.md").read_text()
    assert "(no language model fused (`--use_lm false`" in text
    results = text.split("## Results", 1)[1].split("\n#", 1)[0]
    rows = [line.split("|")[1].strip() for line in results.splitlines()
            if line.startswith("| ") and not line.startswith("| System")]
    assert rows == ["dense"], rows


def test_compute_is_recorded_and_the_extra_steps_are_matched(recipe):
    """prune_tiny: 2 epochs x 3 steps per language, 2 languages -> the pathway stage,
    dense_ft and pathways_random take 12 steps each (their config says 2 x 3)."""
    d, _ = recipe
    exp = d / "exp"
    compute = {p.parent.name: json.loads(p.read_text()) for p in exp.glob("asr_*/compute.json")}
    lsp = [f"asr_lsp_imp_{lang}" for lang in ("en", "nl")]
    for run_dir in ["asr_dense", "asr_dense_ft", "asr_lap", "asr_pathways_imp",
                    "asr_pathways_random", *lsp]:
        assert set(compute[run_dir]) == {"steps", "steps_per_lang", "utts_per_lang", "epochs"}
    assert compute["asr_lsp_imp_nl"]["steps"] == 6
    assert compute["asr_lsp_imp_nl"]["steps_per_lang"] == {"en": 0, "nl": 6}
    for run_dir in ("asr_pathways_imp", "asr_dense_ft", "asr_pathways_random"):
        assert compute[run_dir]["steps"] == 12 and compute[run_dir]["epochs"] == 2, run_dir
    sources = (exp / "asr_pathways_imp/compute_sources").read_text().split()
    assert sources == ["asr_dense", *lsp, "asr_pathways_imp"]
    assert (exp / "asr_dense_ft/compute_sources").read_text().split() == ["asr_dense", "asr_dense_ft"]
    # dense_ft's own language balance (--dense_ft_sampling_power, chosen on dev for it);
    # the pathway runs keep the config's
    assert yaml.safe_load((exp / "asr_dense_ft/config.yaml").read_text())[
        "language_sampling_power"] == 0.5
    assert yaml.safe_load((exp / "asr_pathways_imp/config.yaml").read_text())[
        "language_sampling_power"] == yaml.safe_load(
            (ROOT / "tests/conf/pathways_tiny.yaml").read_text()).get("language_sampling_power", 1.0)
    # --lsp_prune_every "en=1 nl=2": each language's IMP interval reached its run
    for lang, every in (("en", 1), ("nl", 2)):
        assert yaml.safe_load((exp / f"asr_lsp_imp_{lang}/config.yaml").read_text())[
            "pruning_every"] == every
    assert compute["asr_pathways_dynamic"]["steps"] == 12  # matched, no per-language runs
    assert (exp / "asr_pathways_dynamic/compute_sources").read_text().split() == [
        "asr_dense", "asr_lap", "asr_pathways_dynamic"]  # the LAP start: its steps count


def test_dynamic_pathways_end_at_the_target_and_report_their_drift(recipe):
    d, _ = recipe
    from espnet_pathways.masks import PathwayMasks

    exp = d / "exp"
    masks = PathwayMasks.load(exp / "asr_pathways_dynamic/masks.pth")
    for lang in ("en", "nl"):
        assert abs(masks.sparsity(lang) - 0.7) < 0.01
    drift = json.loads((exp / "asr_pathways_dynamic/mask_drift.json").read_text())
    assert set(drift["start"]) == set(drift["end"]) == {"en-nl"}
    assert "pathways_dynamic" in (d / "RESULTS.md").read_text()


def test_random_pathways_are_a_trained_sparse_model(recipe):
    d, _ = recipe
    from espnet_pathways.masks import PathwayMasks

    masks = PathwayMasks.load(d / "exp/asr_pathways_random/masks.pth")
    assert masks.meta["method"] == "random"
    for lang in ("en", "nl"):
        assert abs(masks.sparsity(lang) - 0.7) < 0.01
    assert masks.iou("en", "nl") < 0.5  # independent random draws
    # each language's layers pruned as in its LSP-IMP mask (--random_layer_sparsity lsp_imp)
    lsp = PathwayMasks.load(d / "exp/masks/lsp_imp.pth")
    assert masks.meta["random_layer_sparsity_from"].endswith("masks/lsp_imp.pth")
    for lang in ("en", "nl"):
        assert masks.layer_sparsity(lang) == pytest.approx(lsp.layer_sparsity(lang), abs=1e-6)
    info = json.loads((d / "exp/asr_pathways_random/system_info.json").read_text())
    assert abs(info["sparsity"]["nl"] - 0.7) < 0.01


def test_adding_czech_keeps_the_old_languages_and_trains_in_one_pool(recipe):
    """Stages 18-21 (``--add_language cs``, real Czech speech of fillets-ng-data-cs) on the
    smoke model: the frozen pathway and the dense baseline (the dense model fine-tuned on
    Czech) train side by side (stage 20's pool), the frozen mode leaves en/nl's
    hypotheses identical, and both result files get the section.  (The shared mode and
    the from-scratch baseline are the same stage code with other flags: their stage-20
    commands are checked with a fake trainer in tests/test_train_jobs.py, the shared
    mode's training in tests/test_add_language.py, the scratch row of the results there
    too; leaving them out keeps the test command within its time.)"""
    d, cmd = recipe
    proc = run(cmd + ["--stage", "18", "--stop_stage", "21", "--add_language", "cs",
                      "--add_language_mode", "frozen", "--add_language_scratch", "false"],
               d, timeout=1200)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert not (d / "exp/asr_add_cs_scratch").exists()
    for tag in ("add_cs_frozen", "add_cs_dense"):
        assert f"{tag}: starting (" in proc.stdout, tag  # the pool's line: started together
        assert (d / "exp" / f"asr_{tag}" / ".done").is_file()
    from espnet_pathways.masks import PathwayMasks

    masks = PathwayMasks.load(d / "exp/asr_add_cs_frozen/masks.pth")
    assert list(masks.languages) == ["en", "nl", "cs"]
    text = (d / "RESULTS_add_cs.md").read_text()
    for lang in ("en", "nl"):
        row = next(line for line in text.splitlines() if line.startswith(f"| frozen | {lang} |"))
        assert row.rstrip(" |").endswith("yes"), row
    assert "| dense on cs alone, from the dense model (baseline) |" in text
    assert "from scratch (baseline)" not in text
    assert "## Adding a language: cs" in (d / "RESULTS.md").read_text()
