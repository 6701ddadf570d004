"""Stage 11 reuses a decoding only when it was made with the same checkpoint, masks, LM
and decoding config: a rerun with ``--use_lm false`` after an LM-fused decoding, or with
another ``--inference_model``, decodes again (their files are older than the result, so
the files' times alone kept the old hypotheses under the new heading).

The decoder is a fake (``--python`` points at a script that answers for
``-m espnet_pathways.bin.asr_pathways_inference``, as test_train_jobs.py fakes the
trainer): it writes ESPnet's 1best_recog files with a hypothesis that names the LM it
was given, so the test takes seconds."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, Sequence

from helpers import fake_recipe

# Records a line in $FAKE_DIR/calls per decoding job; the hypothesis of every utterance
# is "lm" when --lm_file was given, else "nolm".
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1 $2" = "-m espnet_pathways.bin.asr_pathways_inference" ]; then
  out=""; keys=""; hyp=nolm; prev=""
  for a in "$@"; do
    case "$prev" in --output_dir) out=$a ;; --key_file) keys=$a ;; --lm_file) hyp=lm ;; esac
    prev=$a
  done
  echo "decode $*" >>"$FAKE_DIR/calls"
  mkdir -p "$out/1best_recog"
  for f in text token token_int score; do
    awk -v h="$hyp" '{ print $1, h }' "$keys" >"$out/1best_recog/$f"
  done
  echo "rtf 0.1" >"$out/rtf"
  exit 0
fi
exec "$REAL_PYTHON" "$@"
"""


def make_recipe(tmp_path: Path) -> Path:
    """A dense run, an LM and a two-utterance English test set, as stages 2-5 leave them."""
    recipe = fake_recipe(tmp_path, FAKE_PYTHON)
    dense = recipe / "exp" / "asr_dense"
    dense.mkdir(parents=True)
    for name in ("config.yaml", "latest.pth", "valid.loss.best.pth"):
        (dense / name).write_text("")
    for lm_dir in ("lm_shared100_en", "lm_shared100"):  # one LM per language, one shared
        lm = recipe / "exp" / lm_dir
        lm.mkdir()
        for name in ("config.yaml", "valid.loss.best.pth"):
            (lm / name).write_text("")
    for data in ("test", "test_en"):
        d = recipe / "dump" / "raw" / data
        d.mkdir(parents=True)
        (d / "wav.scp").write_text("u1 a.wav\nu2 b.wav\n")
        (d / "utt2lang").write_text("u1 en\nu2 en\n")
    return recipe


def decode(recipe: Path, fake_dir: Path, extra: Sequence[str] = ()) -> subprocess.CompletedProcess:
    fake_dir.mkdir(exist_ok=True)
    env: Dict[str, str] = dict(os.environ, VENV=str(Path(sys.executable).parents[1]),
                               REAL_PYTHON=sys.executable, FAKE_DIR=str(fake_dir))
    return subprocess.run(
        ["bash", "egs2/TEMPLATE/asr_pathways/pathways.sh", "--languages", "en",
         "--stage", "11", "--stop_stage", "11", "--systems", "dense", "--test_sets", "test",
         "--python", str(recipe / "fake_python"), *extra],
        cwd=recipe, env=env, capture_output=True, text=True, timeout=120)


def calls(fake_dir: Path) -> int:
    f = fake_dir / "calls"
    return len(f.read_text().splitlines()) if f.exists() else 0


def hyps(recipe: Path) -> str:
    return (recipe / "exp/asr_dense/decode_streaming/test_en/text").read_text()


def test_a_decoding_is_reused_only_with_the_same_lm_and_checkpoint(tmp_path: Path) -> None:
    recipe, fake = make_recipe(tmp_path), tmp_path / "fake"
    first = decode(recipe, fake, ["--use_lm", "true"])
    assert first.returncode == 0, (first.stdout + first.stderr)[-3000:]
    assert calls(fake) == 2 and hyps(recipe) == "u1 lm\nu2 lm\n"  # 2 jobs

    assert "--lm_file exp/lm_shared100_{lang}/valid.loss.best.pth" in (
        fake / "calls").read_text().splitlines()[-1]  # --lm_per_language true: the default

    same = decode(recipe, fake, ["--use_lm", "true"])
    assert same.returncode == 0, (same.stdout + same.stderr)[-3000:]
    assert "dense/test: decoded already; skipping" in same.stdout
    assert calls(fake) == 2

    shared = decode(recipe, fake, ["--use_lm", "true", "--lm_per_language", "false"])
    assert shared.returncode == 0, (shared.stdout + shared.stderr)[-3000:]
    assert "decoded already" not in shared.stdout and calls(fake) == 4
    assert "--lm_file exp/lm_shared100/valid.loss.best.pth" in (
        fake / "calls").read_text().splitlines()[-1]

    no_lm = decode(recipe, fake, ["--use_lm", "false"])
    assert no_lm.returncode == 0, (no_lm.stdout + no_lm.stderr)[-3000:]
    assert "decoded already" not in no_lm.stdout
    assert calls(fake) == 6 and hyps(recipe) == "u1 nolm\nu2 nolm\n"

    # another checkpoint, whose file is older than the result
    other = decode(recipe, fake, ["--use_lm", "false", "--inference_model", "valid.loss.best.pth"])
    assert other.returncode == 0, (other.stdout + other.stderr)[-3000:]
    assert "decoded already" not in other.stdout and calls(fake) == 8
    assert "--asr_model_file exp/asr_dense/valid.loss.best.pth" in (
        fake / "calls").read_text().splitlines()[-1]
