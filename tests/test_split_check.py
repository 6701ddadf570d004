"""The generic leak check (espnet_pathways.split_check, bin/check_splits): a clean split
passes; a leaked speaker, voice or sentence fails with one line naming it and the files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Dict, Optional

import pytest

from espnet_pathways.bin.check_splits import main
from espnet_pathways.split_check import SplitLeakError, check_splits

ROOT = Path(__file__).resolve().parents[1]


def _dir(d: Path, utts: Dict[str, tuple], spk2voice: Optional[Dict[str, str]] = None) -> Path:
    """utts: utt -> (speaker, lang, text)."""
    d.mkdir(parents=True)
    keys = sorted(utts)
    (d / "utt2spk").write_text("".join(f"{u} {utts[u][0]}\n" for u in keys))
    (d / "utt2lang").write_text("".join(f"{u} {utts[u][1]}\n" for u in keys))
    (d / "text").write_text("".join(f"{u} {utts[u][2]}\n" for u in keys))
    if spk2voice is not None:
        (d / "spk2voice").write_text("".join(f"{s} {v}\n" for s, v in sorted(spk2voice.items())))
    return d


@pytest.fixture
def train(tmp_path: Path) -> Path:
    return _dir(tmp_path / "train", {
        "a.0-l-1": ("a.0", "en", "hello there"), "a.1-l-2": ("a.1", "en", "good morning"),
        "b.0-l-1": ("b.0", "nl", "hallo daar")}, {"a.0": "espeak.a", "a.1": "espeak.a",
                                                   "b.0": "espeak.b"})


def test_clean_split_passes(tmp_path: Path, train: Path) -> None:
    dev = _dir(tmp_path / "dev", {"c.0-l-3": ("c.0", "en", "good night"),
                                  # same words, other language: not a leak
                                  "d.0-l-3": ("d.0", "nl", "hello there")},
               {"c.0": "espeak.c", "d.0": "human.d"})
    counts = check_splits(train, [dev])
    assert counts[str(dev)] == {"speakers": 2, "sentences": 2, "voices": 2}
    main(["--train", str(train), "--held_out", str(dev)])


def test_leaked_speaker(tmp_path: Path, train: Path) -> None:
    test = _dir(tmp_path / "test", {"a.1-l-9": ("a.1", "en", "brand new line")})
    with pytest.raises(SplitLeakError, match=r"speaker 'a.1' of .*test/utt2spk .*a.1-l-9.* "
                                             r"training speaker in .*train/utt2spk"):
        check_splits(train, [test])


def test_leaked_voice_through_another_perturbation(tmp_path: Path, train: Path) -> None:
    """A new speaker id that is a perturbation of a training voice is a leak."""
    test = _dir(tmp_path / "test", {"a.7-l-9": ("a.7", "en", "brand new line")},
                {"a.7": "espeak.a"})
    with pytest.raises(SplitLeakError, match=r"voice 'espeak.a' of .*test/spk2voice"):
        check_splits(train, [test])


def test_leaked_sentence(tmp_path: Path, train: Path) -> None:
    dev = _dir(tmp_path / "dev", {"c.0-l-3": ("c.0", "en", "good night")}, {"c.0": "espeak.c"})
    test = _dir(tmp_path / "test", {"e.0-l-1": ("e.0", "en", "good   morning")},
                {"e.0": "espeak.e"})
    with pytest.raises(SplitLeakError, match=r"sentence \(en\) 'good morning' of "
                                             r".*test/text \(utterance e.0-l-1\) is also in "
                                             r".*train/text \(utterance a.1-l-2\)"):
        check_splits(train, [dev, test])


def test_speaker_without_voice_is_an_error(tmp_path: Path, train: Path) -> None:
    test = _dir(tmp_path / "test", {"f.0-l-9": ("f.0", "en", "x y")}, {"g.0": "espeak.g"})
    with pytest.raises(SplitLeakError, match="no voice for speaker 'f.0'"):
        check_splits(train, [test])


def test_cli_one_line_and_exit_1(tmp_path: Path, train: Path) -> None:
    test = _dir(tmp_path / "test", {"a.0-l-5": ("a.0", "en", "other")})
    p = subprocess.run([sys.executable, "-m", "espnet_pathways.bin.check_splits", "--train",
                        str(train), "--held_out", str(test)], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [
        f"check_splits: error: speaker 'a.0' of {test}/utt2spk (utterance a.0-l-5) is also a "
        f"training speaker in {train}/utt2spk (utterance a.0-l-1)"]


FAKE_DATA_SH = """#!/usr/bin/env bash
# Fake local/data.sh: a dev speaker that is also a training speaker.
set -e
for s in train dev; do mkdir -p data/$s; done
printf 'a-l-1 a\\nb-l-2 b\\n' > data/train/utt2spk
printf 'a-l-1 one\\nb-l-2 two\\n' > data/train/text
printf 'a-l-3 a\\n' > data/dev/utt2spk
printf 'a-l-3 three\\n' > data/dev/text
"""


@pytest.mark.parametrize("check", ["true", "false"])
def test_stage1_runs_the_check(tmp_path: Path, check: str) -> None:
    """pathways.sh stage 1 runs check_splits after local/data.sh (and fails on a leak)
    unless --check_splits false."""
    import os
    for name in ("conf", "egs2", "path.sh", "cmd.sh"):
        (tmp_path / name).symlink_to(ROOT / name)
    (tmp_path / "local").mkdir()
    (tmp_path / "local" / "data.sh").write_text(FAKE_DATA_SH)
    (tmp_path / "local" / "data.sh").chmod(0o755)
    env = dict(os.environ, VENV=str(Path(sys.executable).parents[1]),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    p = subprocess.run(["bash", "egs2/TEMPLATE/asr_pathways/pathways.sh", "--languages", "en",
                        "--stage", "1", "--stop_stage", "1", "--test_sets", "",
                        "--check_splits", check], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    if check == "true":
        assert p.returncode != 0
        assert "check_splits: error: speaker 'a' of data/dev/utt2spk" in p.stderr + p.stdout
    else:
        assert p.returncode == 0, (p.stdout + p.stderr)[-2000:]


@pytest.mark.parametrize("case", ["missing_dir", "one_column", "empty", "spk2voice", "not_utf8"])
def test_cli_bad_files_are_one_line_naming_the_file(tmp_path: Path, train: Path, capsys,
                                                    case: str) -> None:
    """A missing dir, a map line of one column, an empty utt2spk, a speaker line without
    its voice, a binary file: one line naming the file, exit 1, no traceback."""
    from helpers import fails

    dev = _dir(tmp_path / "dev", {"c.0-l-3": ("c.0", "en", "good night")}, {"c.0": "espeak.c"})
    if case == "missing_dir":
        dev, culprit, why = tmp_path / "nodev", tmp_path / "nodev" / "utt2spk", "not found"
    elif case == "one_column":
        culprit, why = dev / "utt2spk", "'c.1' has one column"
        culprit.write_text("c.0-l-3 c.0\nc.1\n")
    elif case == "empty":
        culprit, why = dev / "utt2spk", "empty"
        culprit.write_text("")
    elif case == "spk2voice":
        culprit, why = dev / "spk2voice", "'c.0' has one column"
        culprit.write_text("c.0\n")
    else:
        culprit, why = dev / "text", "not UTF-8"
        culprit.write_bytes(b"c.0-l-3 \xff\xfe\x00\n")
    line = fails(main, ["--train", str(train), "--held_out", str(dev)], capsys)
    assert line.startswith(f"check_splits: error: {culprit}: ") and why in line, line
