"""pathways.sh's train_system keeps the training log across reruns: a rerun (resume after a
crash, a changed config) appends to train.log after a line naming the date and command,
and the stage still shows the last epochs' results when the rerun trained nothing.

The trainer is a fake (``--python`` points at a script that answers for
``-m espnet_pathways.bin.asr_pathways_train`` and runs the real Python otherwise), so
the test runs stage 5 in seconds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
# The trainer prints what FAKE_TRAINER says (and fails when FAKE_FAIL=1); anything else
# is the real Python.
if [ "$1 $2" = "-m espnet_pathways.bin.asr_pathways_train" ]; then
  printf '%b' "$FAKE_TRAINER"
  [ "${FAKE_FAIL:-0}" = 1 ] && exit 1
  exit 0
fi
exec "$REAL_PYTHON" "$@"
"""


def run_stage5(recipe: Path, trainer_output: str, train_args: str = "",
               fail: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, VENV=str(Path(sys.executable).parents[1]), REAL_PYTHON=sys.executable,
               FAKE_TRAINER=trainer_output, FAKE_FAIL="1" if fail else "0",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        ["bash", "egs2/TEMPLATE/asr_pathways/pathways.sh", "--languages", "en", "--stage", "5",
         "--stop_stage", "5", "--systems", "dense", "--python", str(recipe / "fake_python"),
         "--train_args", train_args],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=120)


def test_rerun_appends_to_train_log_and_shows_the_earlier_epochs(tmp_path: Path) -> None:
    for name in ("conf", "egs2", "path.sh", "cmd.sh"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "fake_python").write_text(FAKE_PYTHON)
    (tmp_path / "fake_python").chmod(0o755)
    log = tmp_path / "exp" / "asr_dense" / "train.log"

    first = run_stage5(tmp_path, "1epoch results: [valid] loss=50.0\\n"
                       "2epoch results: [valid] loss=40.0\\n")
    assert first.returncode == 0, (first.stdout + first.stderr)[-2000:]
    assert "2epoch results: [valid] loss=40.0" in first.stdout
    history = log.read_text()
    assert history.count("=====") == 2 and "asr_pathways_train" in history

    # A changed config resumes a finished run: nothing new is trained, the log and the
    # stage's summary keep the two epochs.
    again = run_stage5(tmp_path, "The training was already finished at 2 epochs\\n",
                       train_args="--max_epoch 2")
    assert again.returncode == 0, (again.stdout + again.stderr)[-2000:]
    text = log.read_text()
    assert text.startswith(history)
    rerun = text[len(history):]
    assert rerun.lstrip("\n").startswith("===== 20")  # the date
    assert "--max_epoch 2" in rerun.splitlines()[1] and "already finished" in rerun
    assert "2epoch results: [valid] loss=40.0" in again.stdout

    # A failing rerun keeps everything and says where to look.
    failed = run_stage5(tmp_path, "RuntimeError: out of memory\\n", train_args="--max_epoch 3",
                        fail=True)
    assert failed.returncode != 0
    assert log.read_text().startswith(text) and "out of memory" in failed.stderr
