"""pathways.sh runs a stage's independent trainings side by side (--train_jobs): with 2
jobs two trainings overlap and each gets half of OMP_NUM_THREADS; with 1 they run one
after the other; a failing one stops the script with its name and log while the other's
.done is kept, so a rerun trains only the failed one; stage 7's interval sweep trains all
candidates of all languages in one pool and chooses each language's after them.

The trainer is a fake (``--python`` points at a script that answers for
``-m espnet_pathways.bin.asr_pathways_train``, as in test_train_log.py); stage 6 with
dense_ft and dense_small (and stage 7) is driven, so the test takes seconds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

from helpers import fake_recipe

ROOT = Path(__file__).resolve().parents[1]

# Each training records under $FAKE_DIR: <tag>.threads (its OMP_NUM_THREADS), <tag>.ranks
# (torch.distributed.run's --nproc_per_node; 1 without it), <tag>.args, <tag>.others
# (how many trainings had started and not ended when it started) and a line in calls.
# With FAKE_RENDEZVOUS=1 it waits (up to 60 s) until FAKE_RENDEZVOUS_N (default 2)
# trainings have started and writes <tag>.saw_other (1: they did, while itself still
# running; 0: it gave up).
# FAKE_FAIL_TAG names a training that fails.  select_on_dev is faked too (stage 7's sweep).
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1 $2" = "-m torch.distributed.run" ]; then  # CPU DDP: note the ranks, run once
  shift 2; FAKE_RANKS=1
  while [ "$1" != --no-python ]; do [ "$1" = --nproc_per_node ] && FAKE_RANKS=$2; shift; done
  shift; export FAKE_RANKS; exec "$@"
fi
if [ "$1 $2" = "-m espnet_pathways.bin.asr_pathways_train" ]; then
  tag=""; prev=""
  for a in "$@"; do [ "$prev" = --output_dir ] && tag=${a##*/asr_}; prev=$a; done
  d=$FAKE_DIR
  count() { ls "$d" | grep -c "\\.$1\$" || true; }
  echo "$tag" >>"$d/calls"
  echo "$OMP_NUM_THREADS" >"$d/$tag.threads"
  echo "${FAKE_RANKS:-1}" >"$d/$tag.ranks"
  echo "$*" >"$d/$tag.args"
  echo $(( $(count started) - $(count ended) )) >"$d/$tag.others"
  touch "$d/$tag.started"
  if [ "$FAKE_RENDEZVOUS" = 1 ]; then
    echo 0 >"$d/$tag.saw_other"
    for _ in $(seq 600); do
      [ "$(count started)" -ge "${FAKE_RENDEZVOUS_N:-2}" ] && { echo 1 >"$d/$tag.saw_other"; break; }
      sleep 0.1
    done
  else
    sleep 0.3
  fi
  touch "$d/$tag.ended"
  echo "1epoch results: [valid] loss=1.0"
  [ -n "${FAKE_SAY:-}" ] && echo "$FAKE_SAY"
  if [ "$tag" = "${FAKE_FAIL_TAG:-}" ]; then echo "RuntimeError: fake failure of $tag"; exit 1; fi
  exit 0
fi
if [ "$1 $2" = "-m espnet_pathways.bin.select_on_dev" ]; then  # picks the last candidate
  echo "select_on_dev" >>"$FAKE_DIR/calls"; echo "${@: -1}"; exit 0
fi
exec "$REAL_PYTHON" "$@"
"""


def make_recipe(tmp_path: Path) -> Path:
    recipe = fake_recipe(tmp_path, FAKE_PYTHON)
    (recipe / "exp" / "asr_dense").mkdir(parents=True)
    (recipe / "exp" / "asr_dense" / "latest.pth").write_bytes(b"")  # dense_ft's start
    return recipe


def run_stage(recipe: Path, fake_dir: Path, train_jobs: object, rendezvous: int = 0,
              fail_tag: str = "", extra: Sequence[str] = (), stage: int = 6,
              systems: str = "dense dense_ft dense_small",
              languages: str = "en", cpu_ranks: int = 1) -> subprocess.CompletedProcess:
    """One stage with the fake trainer; ``cpu_ranks`` 1 keeps one process per training
    (the tests of --cpu_ranks set it)."""
    fake_dir.mkdir(exist_ok=True)
    env: Dict[str, str] = dict(
        os.environ, VENV=str(Path(sys.executable).parents[1]), REAL_PYTHON=sys.executable,
        FAKE_DIR=str(fake_dir), FAKE_RENDEZVOUS="1" if rendezvous else "0",
        FAKE_RENDEZVOUS_N=str(rendezvous or 2), FAKE_FAIL_TAG=fail_tag,
        OMP_NUM_THREADS="4",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        ["bash", "egs2/TEMPLATE/asr_pathways/pathways.sh", "--languages", languages,
         "--stage", str(stage), "--stop_stage", str(stage), "--systems", systems,
         "--train_jobs", str(train_jobs), "--cpu_ranks", str(cpu_ranks),
         "--python", str(recipe / "fake_python"),
         "--train_job_mem_mb", "1",  # fake trainings take no memory: never capped by it
         *extra],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=180)


def read(fake_dir: Path, tag: str, what: str) -> str:
    return (fake_dir / f"{tag}.{what}").read_text().strip()


def test_two_jobs_overlap_and_share_the_threads(tmp_path: Path) -> None:
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs=2, rendezvous=2)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for tag in ("dense_ft", "dense_small"):
        assert read(fake, tag, "threads") == "2"  # OMP_NUM_THREADS=4 over 2 jobs
        assert (recipe / "exp" / f"asr_{tag}" / ".done").is_file()
        assert f"[{tag}] 1epoch results: [valid] loss=1.0" in done.stdout  # attributable
        # each saw the other start while it ran: the two overlapped
        assert read(fake, tag, "saw_other") == "1"


def test_one_job_runs_them_one_after_the_other_with_all_threads(tmp_path: Path) -> None:
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs=1)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for tag in ("dense_ft", "dense_small"):
        assert read(fake, tag, "others") == "0" and read(fake, tag, "threads") == "4"
    # a stage left with one training gives it all threads, also when --train_jobs is 2
    (recipe / "exp" / "asr_dense_small" / ".done").unlink()
    again = run_stage(recipe, tmp_path / "fake2", train_jobs=2)
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert (tmp_path / "fake2" / "calls").read_text().split() == ["dense_small"]
    assert read(tmp_path / "fake2", "dense_small", "threads") == "4"


def test_a_pool_starts_no_more_trainings_than_fit_in_memory(tmp_path: Path) -> None:
    """--train_job_mem_mb: with more memory a training than the machine has available,
    `all` runs them one after the other (with all threads), and says why; a value that
    is not a positive integer stops the script before any training."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs="all", extra=["--train_job_mem_mb", "100000000"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "(--train_job_mem_mb): at most 1 of 2 at once" in done.stdout
    for tag in ("dense_ft", "dense_small"):
        assert read(fake, tag, "others") == "0" and read(fake, tag, "threads") == "4"
    bad = run_stage(recipe, tmp_path / "fake_bad", train_jobs="all",
                    extra=["--train_job_mem_mb", "2GB"])
    assert bad.returncode == 1 and "--train_job_mem_mb must be a positive integer" in bad.stderr
    assert not (tmp_path / "fake_bad" / "calls").exists()


def test_all_starts_every_training_of_the_stage_at_once(tmp_path: Path) -> None:
    """The CPU default: three LSP runs on OMP_NUM_THREADS=4 start together, 1 thread each
    (4 // 3), and each sees the other two start while it runs; with 2 the third would
    only start after one of them ended (the rendezvous of three times out)."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs="all", rendezvous=3, stage=7,
                     systems="dense lsp_imp", languages="en fr it")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    for lang in ("en", "fr", "it"):
        assert read(fake, f"lsp_imp_{lang}", "threads") == "1"
        assert read(fake, f"lsp_imp_{lang}", "saw_other") == "1"


def test_a_failed_job_is_named_the_other_is_kept_and_a_rerun_trains_only_it(tmp_path: Path) -> None:
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    failed = run_stage(recipe, fake, train_jobs=2, rendezvous=2, fail_tag="dense_small")
    assert failed.returncode != 0
    assert "training dense_small failed; see exp/asr_dense_small/train.log" in failed.stderr
    assert "[dense_small] RuntimeError: fake failure of dense_small" in failed.stderr
    assert "Traceback" not in failed.stderr
    assert (recipe / "exp" / "asr_dense_ft" / ".done").is_file()
    assert not (recipe / "exp" / "asr_dense_small" / ".done").exists()

    rerun = run_stage(recipe, tmp_path / "fake2", train_jobs=2)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-3000:]
    assert (tmp_path / "fake2" / "calls").read_text().split() == ["dense_small"]
    assert "dense_ft: already trained with this config" in rerun.stdout
    # the rerun's stage time covers one training: stage_times.tsv says one was reused
    last = (recipe / "exp" / "stage_times.tsv").read_text().splitlines()[-1].split("\t")
    assert last[1] == "6" and last[4] == "1", last
    assert not (recipe / "exp" / ".stage_reused").exists()


def test_a_training_given_several_threads_runs_as_gloo_ddp_ranks(tmp_path: Path) -> None:
    """--cpu_ranks N: a CPU training given T threads starts min(N, T) ranks through
    torch.distributed.run, T/ranks threads each, in ESPnet's external-launcher mode
    (gloo); trainings that share the cores (1 thread each) stay single processes."""
    recipe = make_recipe(tmp_path)
    cases = [(2, 1, "2", "2"), (4, 1, "4", "1"), (1, 1, "1", "4"), (2, 2, "2", "1")]
    for n, (cpu_ranks, jobs, ranks, threads) in enumerate(cases):
        fake = tmp_path / f"fake{n}"
        for tag in ("dense_ft", "dense_small"):
            (recipe / "exp" / f"asr_{tag}" / ".done").unlink(missing_ok=True)
        done = run_stage(recipe, fake, train_jobs=jobs, cpu_ranks=cpu_ranks)
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        for tag in ("dense_ft", "dense_small"):
            assert (read(fake, tag, "ranks"), read(fake, tag, "threads")) == (ranks, threads), \
                (cpu_ranks, jobs, tag)
            gloo = "--multiprocessing_distributed false --dist_backend gloo" in read(fake, tag, "args")
            assert gloo == (ranks != "1"), (cpu_ranks, jobs, tag)
    gpu = run_stage(recipe, tmp_path / "fake_gpu", train_jobs=1, cpu_ranks=2,
                    extra=["--ngpu", "1"], systems="dense dense_ft")
    assert gpu.returncode == 0, (gpu.stdout + gpu.stderr)[-3000:]
    assert read(tmp_path / "fake_gpu", "dense_ft", "ranks") == "1"  # one GPU: no CPU ranks
    bad = run_stage(recipe, tmp_path / "fake_bad", train_jobs=1, cpu_ranks=0)
    assert bad.returncode != 0 and "--cpu_ranks must be a positive integer" in bad.stderr


def test_train_jobs_must_be_a_positive_integer_and_one_with_gpus(tmp_path: Path) -> None:
    recipe = make_recipe(tmp_path)
    bad = run_stage(recipe, tmp_path / "fake", train_jobs=0)
    assert bad.returncode != 0 and "--train_jobs must be a positive integer" in bad.stderr
    gpu = run_stage(recipe, tmp_path / "fake", train_jobs=2, extra=["--ngpu", "1"])
    assert gpu.returncode != 0 and "GPUs are not shared between trainings" in gpu.stderr
    assert not (tmp_path / "fake" / "calls").exists()  # stopped before any training


def test_lsp_sweep_runs_all_candidates_in_one_pool_then_chooses_per_language(tmp_path: Path) -> None:
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs=2, stage=7, systems="dense lsp_imp",
                     languages="en fr", extra=["--lsp_prune_every_candidates", "10 20"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    calls = (fake / "calls").read_text().split()
    runs = {f"lsp_imp_{lang}_every{t}" for lang in ("en", "fr") for t in (10, 20)}
    assert set(calls[:4]) == runs and calls[4:] == ["select_on_dev", "select_on_dev"]
    assert all(read(fake, r, "threads") == "2" for r in runs)  # OMP_NUM_THREADS=4, 2 at once
    for lang in ("en", "fr"):
        assert (recipe / "exp" / f"asr_lsp_imp_{lang}").resolve().name == f"asr_lsp_imp_{lang}_every20"
    assert (recipe / "exp" / "lsp_prune_every.tsv").read_text() == "en\t20\nfr\t20\n"


def test_lsp_prune_every_sets_the_named_languages_interval(tmp_path: Path) -> None:
    """--lsp_prune_every "en=20": en's LSP-IMP run gets --pruning_every 20, fr keeps the
    config's; a malformed entry stops the script before any training."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs="all", stage=7, systems="dense lsp_imp",
                     languages="en fr", extra=["--lsp_prune_every", "en=20 de=40"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "--pruning_every 20" in read(fake, "lsp_imp_en", "args")
    assert "--pruning_every" not in read(fake, "lsp_imp_fr", "args")
    for bad in ("en=0", "en", "en=x"):
        proc = run_stage(recipe, tmp_path / "fake_bad", train_jobs="all", stage=7,
                         systems="dense lsp_imp", extra=["--lsp_prune_every", bad])
        assert proc.returncode != 0 and f"--lsp_prune_every: '{bad}'" in proc.stderr, bad
        assert not (tmp_path / "fake_bad" / "calls").exists()


def test_baseline_options_reach_dense_ft_and_pathways_random(tmp_path: Path) -> None:
    """dense_ft gets its own --language_sampling_power (--dense_ft_sampling_power, "":
    the config's); pathways_random is cut in at the first step with the LSP masks'
    layer-wise sparsity by default, gradually over --random_pruning_end of its steps and
    uniform per layer on request."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs="all", stage=6, systems="dense dense_ft")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "--language_sampling_power 0.5" in read(fake, "dense_ft", "args")
    (recipe / "exp" / "asr_dense_ft" / ".done").unlink(missing_ok=True)
    done = run_stage(recipe, tmp_path / "fake_cfg", train_jobs="all", stage=6,
                     systems="dense dense_ft", extra=["--dense_ft_sampling_power", ""])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "--language_sampling_power" not in read(tmp_path / "fake_cfg", "dense_ft", "args")
    done = run_stage(recipe, fake, train_jobs="all", stage=10, systems="dense pathways_random")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    args = read(fake, "pathways_random", "args")
    assert "--pruning random" in args and "--pruning_fraction 0.7 --pruning_every 1" in args
    assert "--random_layer_sparsity_from exp/masks/lsp_imp.pth" in args
    (recipe / "exp" / "asr_pathways_random" / ".done").unlink(missing_ok=True)
    done = run_stage(recipe, tmp_path / "fake_gradual", train_jobs="all", stage=10,
                     systems="dense pathways_random",
                     extra=["--random_pruning_fraction", "0.3", "--random_pruning_end", "0.5",
                            "--random_layer_sparsity", "uniform"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    args = read(tmp_path / "fake_gradual", "pathways_random", "args")
    # one language: 200 matched steps; 4 rounds over the first half -> every 25 steps
    assert "--pruning_every 25" in args and "--random_layer_sparsity_from" not in args
    for opt, bad in (("--random_pruning_end", "2"), ("--random_layer_sparsity", "lap"),
                     ("--dense_ft_sampling_power", "-1")):
        proc = run_stage(recipe, tmp_path / "fake_bad", train_jobs="all", stage=6,
                         systems="dense dense_ft", extra=[opt, bad])
        assert proc.returncode != 0 and f"{opt} must be" in proc.stderr, opt
        assert not (tmp_path / "fake_bad" / "calls").exists()


def test_dynamic_steps_sets_pathways_dynamic_s_step_count(tmp_path: Path) -> None:
    """pathways_dynamic takes the pathway stage's matched steps, or --dynamic_steps
    (rounded up to whole epochs of --pathways_config's max_epoch 2)."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs="all", stage=10, systems="dense pathways_dynamic")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    args = read(fake, "pathways_dynamic", "args")
    assert "--pruning dynamic" in args and "--num_iters_per_epoch 100" in args  # 200 matched
    (recipe / "exp" / "asr_pathways_dynamic" / ".done").unlink(missing_ok=True)
    done = run_stage(recipe, tmp_path / "fake_1201", train_jobs="all", stage=10,
                     systems="dense pathways_dynamic", extra=["--dynamic_steps", "1201"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    args = read(tmp_path / "fake_1201", "pathways_dynamic", "args")
    assert "--num_iters_per_epoch 601" in args and "--num_iters_per_epoch 100" not in args
    for bad in ("0", "12x", "-5"):
        proc = run_stage(recipe, tmp_path / "fake_bad", train_jobs="all", stage=10,
                         systems="dense pathways_dynamic", extra=["--dynamic_steps", bad])
        assert proc.returncode != 0 and "--dynamic_steps must be" in proc.stderr, bad
        assert not (tmp_path / "fake_bad" / "calls").exists()


def test_add_language_lr_sets_each_stage_20_training_s_learning_rate(tmp_path: Path) -> None:
    """--add_language_lr "frozen=.. dense=..": the named trainings of stage 20 get
    --optim_conf lr=.. (ESPnet merges it into the config's optim_conf), the others keep
    their config's; a malformed entry stops the script before any training."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    for sub in ("init", "init_dense"):
        (recipe / "exp" / "add_cs" / sub).mkdir(parents=True)
        (recipe / "exp" / "add_cs" / sub / "train.yaml").write_text("max_epoch: 1\n")
    add = ["--add_language", "cs", "--add_language_mode", "frozen shared"]
    done = run_stage(recipe, fake, train_jobs="all", stage=20, systems="dense pathways_imp",
                     extra=add + ["--add_language_lr", "frozen=0.016 dense=2e-3 scratch=0.004"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    args = {tag: read(fake, f"add_cs_{tag}", "args")
            for tag in ("frozen", "shared", "dense", "scratch")}
    assert "--optim_conf lr=0.016" in args["frozen"] and "--freeze_pathways" in args["frozen"]
    assert "--optim_conf" not in args["shared"]
    assert "--optim_conf lr=2e-3" in args["dense"]
    # the from-scratch baseline: the dense baseline's config, random weights
    assert "--optim_conf lr=0.004" in args["scratch"] and "--init_param" not in args["scratch"]
    assert "add_cs/init_dense/train.yaml" in args["scratch"] and "--init_param" in args["dense"]
    for bad in ("frozen=fast", "lap=0.1"):
        proc = run_stage(recipe, tmp_path / "fake_bad", train_jobs="all", stage=20,
                         systems="dense pathways_imp", extra=add + ["--add_language_lr", bad])
        assert proc.returncode != 0 and f"--add_language_lr: '{bad}'" in proc.stderr, bad
        assert not (tmp_path / "fake_bad" / "calls").exists()


def test_a_boolean_option_that_is_not_true_or_false_stops_before_anything_runs(
        tmp_path: Path) -> None:
    """pathways.sh runs its boolean options as commands (``if "$x"``): ``yes`` would run
    ``yes`` forever.  Any other value than true/false is one line naming the option."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    for opt in ("--add_language_scratch", "--match_compute", "--skip_data_prep"):
        proc = run_stage(recipe, fake, train_jobs="all", extra=[opt, "yes"])
        assert proc.returncode == 1, opt
        assert proc.stderr.strip().splitlines()[-1].endswith(
            f"{opt} must be true or false, got 'yes'"), proc.stderr
    assert not (fake / "calls").exists()


def test_a_finished_run_resumed_with_other_options_that_trains_nothing_is_redone(
        tmp_path: Path, monkeypatch) -> None:
    """Rerun with other options, a finished run resumes as in ESPnet; when ESPnet then
    trains nothing ("already reached at max_epoch": a new learning rate, say), the old
    run moves to asr_TAG.old and the training starts afresh instead of marking the old
    model done.  A resumed run that trains on (a larger max_epoch) stays in place."""
    recipe = make_recipe(tmp_path)
    run_dir = recipe / "exp" / "asr_dense_ft"
    first = run_stage(recipe, tmp_path / "f1", train_jobs=1, systems="dense dense_ft")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    (run_dir / "checkpoint.pth").write_text("old options")
    monkeypatch.setenv("FAKE_SAY", "WARNING: The training has already reached at max_epoch: 2")
    second = run_stage(recipe, tmp_path / "f2", train_jobs=1, systems="dense dense_ft",
                       extra=["--train_args", "--optim_conf lr=0.1"])
    assert second.returncode == 0, (second.stdout + second.stderr)[-3000:]
    assert "moved to exp/asr_dense_ft.old, training afresh" in second.stdout
    assert (recipe / "exp" / "asr_dense_ft.old" / "checkpoint.pth").read_text() == "old options"
    assert not (run_dir / "checkpoint.pth").exists() and (run_dir / ".done").is_file()
    assert (tmp_path / "f2" / "calls").read_text().split() == ["dense_ft", "dense_ft"]
    # other options again (max_epoch), and this time the resumed run trains on: in place
    monkeypatch.setenv("FAKE_SAY", "3epoch results: [valid] loss=0.9")
    (run_dir / "checkpoint.pth").write_text("resumable")
    third = run_stage(recipe, tmp_path / "f3", train_jobs=1, systems="dense dense_ft",
                      extra=["--train_args", "--optim_conf lr=0.1 --max_epoch 3"])
    assert third.returncode == 0, (third.stdout + third.stderr)[-3000:]
    assert "training afresh" not in third.stdout
    assert (run_dir / "checkpoint.pth").read_text() == "resumable"
    assert (tmp_path / "f3" / "calls").read_text().split() == ["dense_ft"]


def test_a_training_whose_start_model_changed_is_redone(tmp_path: Path) -> None:
    """Same config and arguments, but the model it starts from (--init_param) is new (a
    rerun of stage 5): the run is not skipped; with the same model it is."""
    recipe = make_recipe(tmp_path)
    dense = recipe / "exp" / "asr_dense" / "latest.pth"
    first = run_stage(recipe, tmp_path / "f1", train_jobs=1, systems="dense dense_ft")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    same = run_stage(recipe, tmp_path / "f2", train_jobs=1, systems="dense dense_ft")
    assert "dense_ft: already trained with this config" in same.stdout
    assert not (tmp_path / "f2" / "calls").exists()
    dense.write_bytes(b"a retrained dense model")
    again = run_stage(recipe, tmp_path / "f3", train_jobs=1, systems="dense dense_ft")
    assert again.returncode == 0, (again.stdout + again.stderr)[-3000:]
    assert (tmp_path / "f3" / "calls").read_text().split() == ["dense_ft"]


def test_feats_normalize_reaches_every_training_and_a_change_retrains(tmp_path: Path) -> None:
    """--feats_normalize (asr.sh's option) gives every training its --normalize with stage
    4's statistics, and a finished run is redone when it changes (then kept)."""
    recipe = make_recipe(tmp_path)
    first = run_stage(recipe, tmp_path / "f1", train_jobs=1, systems="dense dense_ft")
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    args = read(tmp_path / "f1", "dense_ft", "args")
    assert "--normalize global_mvn --normalize_conf stats_file=exp/asr_stats_" in args
    done = recipe / "exp" / "asr_dense_ft" / ".done"
    causal = run_stage(recipe, tmp_path / "f2", train_jobs=1, systems="dense dense_ft",
                       extra=["--feats_normalize", "causal_mvn"])
    assert causal.returncode == 0, (causal.stdout + causal.stderr)[-3000:]
    assert (tmp_path / "f2" / "calls").read_text().split() == ["dense_ft"]
    assert "--normalize causal_mvn --normalize_conf stats_file=" in read(tmp_path / "f2", "dense_ft", "args")
    same = run_stage(recipe, tmp_path / "f3", train_jobs=1, systems="dense dense_ft",
                     extra=["--feats_normalize", "causal_mvn"])
    assert "dense_ft: already trained with this config" in same.stdout
    assert not (tmp_path / "f3" / "calls").exists() and done.is_file()
    bad = run_stage(recipe, tmp_path / "f4", train_jobs=1, systems="dense dense_ft",
                    extra=["--feats_normalize", "cmvn"])
    assert bad.returncode != 0 and "--feats_normalize must be" in bad.stderr and "'cmvn'" in bad.stderr
    assert not (tmp_path / "f4" / "calls").exists() and done.is_file()


def test_a_scratch_expdir_leaves_the_main_reports_alone(tmp_path: Path) -> None:
    """Reports follow --expdir: a sweep in exp_scratch (stage 20 here) refreshes
    exp_scratch's reports if any, never the main run's RESULTS_add_cs.md, which the
    same stage in exp refreshes (its stage-timing table gets stage 20's row)."""
    recipe = make_recipe(tmp_path)
    report = ("# Results: adding a language\n\n## Adding a language: cs\n\n| System |\n\n"
              "### Stage timings\n\nn/a\n")
    (recipe / "RESULTS_add_cs.md").write_text(report)
    add = ["--add_language", "cs", "--add_language_mode", "frozen", "--add_language_baseline", "false",
           "--add_language_scratch", "false"]
    for expdir in ("exp_scratch", "exp"):
        (recipe / expdir / "add_cs" / "init").mkdir(parents=True, exist_ok=True)
        (recipe / expdir / "add_cs" / "init" / "train.yaml").write_text("max_epoch: 1\n")
        done = run_stage(recipe, tmp_path / f"fake_{expdir}", train_jobs="all", stage=20,
                         systems="dense pathways_imp", extra=add + ["--expdir", expdir])
        assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
        text = (recipe / "RESULTS_add_cs.md").read_text()
        if expdir == "exp_scratch":
            assert text == report
        else:
            assert "| 20 | add cs: new pathway" in text and text.startswith(report.split("n/a")[0])


def test_lth_systems_are_wired_through_stages_7_and_10(tmp_path: Path) -> None:
    """lsp_lth and pathways_lth (systems on request, not in the smoke run): stage 7 runs
    one LTH pruning per language with the rewind step, stage 10 trains the pathways from
    the dense weights with the combined LTH masks; the LSP-IMP runs are not started for
    them."""
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    done = run_stage(recipe, fake, train_jobs="all", stage=7, systems="dense lsp_lth",
                     languages="en fr", extra=["--lth_rewind_step", "3"])
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert sorted((fake / "calls").read_text().split()) == ["lsp_lth_en", "lsp_lth_fr"]
    for lang in ("en", "fr"):
        args = read(fake, f"lsp_lth_{lang}", "args")
        assert f"--pruning lth --lth_rewind_step 3 --pruning_languages {lang}" in args
        assert "--init_param exp/asr_dense/latest.pth" in args
    done = run_stage(recipe, tmp_path / "fake10", train_jobs="all", stage=10,
                     systems="dense pathways_lth", languages="en fr")
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert (tmp_path / "fake10" / "calls").read_text().split() == ["pathways_lth"]
    args = read(tmp_path / "fake10", "pathways_lth", "args")
    assert "--pathway_masks exp/masks/lsp_lth.pth" in args
    assert "--init_param exp/asr_dense/latest.pth" in args
