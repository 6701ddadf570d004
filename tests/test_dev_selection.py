"""Choosing among candidate runs on the dev loss ESPnet recorded in their checkpoints."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from espnet2.train.reporter import Reporter

from helpers import write_dev_losses

from espnet_pathways.dev_selection import dev_loss, select_on_dev


def fake_run(path, losses):
    """An exp dir whose checkpoint.pth reporter saw these per-epoch dev losses."""
    path.mkdir()
    return write_dev_losses(path, losses)


def test_last_or_best_epoch_and_the_lowest_run_wins(tmp_path):
    a = fake_run(tmp_path / "every20", [50.0, 40.0, 45.0])
    b = fake_run(tmp_path / "every40", [48.0, 44.0, 43.0])
    assert dev_loss(a, "last") == pytest.approx(45.0)
    assert dev_loss(a, "best") == pytest.approx(40.0)
    assert select_on_dev([a, b], "last")[0] == b  # a pruning run: its final masks
    assert select_on_dev([a, b], "best")[0] == a


def test_cli_prints_the_choice_and_names_an_untrained_candidate(tmp_path):
    a = fake_run(tmp_path / "every20", [50.0])
    b = fake_run(tmp_path / "every40", [30.0])
    cmd = [sys.executable, "-m", "espnet_pathways.bin.select_on_dev", "--table",
           str(tmp_path / "choice.tsv")]
    out = subprocess.run(cmd + [str(a), str(b)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(b)
    assert (tmp_path / "choice.tsv").read_text().splitlines()[1].startswith(f"{b}\t30.0")
    missing = tmp_path / "every60"
    out = subprocess.run(cmd + [str(a), str(missing)], capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == (
        f"select_on_dev: error: {missing}/checkpoint.pth: no checkpoint (was {missing} trained?)")
    assert (tmp_path / "choice.tsv").read_text().startswith(str(a))  # earlier record kept


@pytest.mark.parametrize("case", ["truncated", "no_valid_loss", "foreign"])
def test_cli_damaged_checkpoint_names_it_and_keeps_the_table(tmp_path, capsys, case):
    from helpers import fails

    from espnet_pathways.bin.select_on_dev import main

    a = fake_run(tmp_path / "every20", [50.0])
    b = fake_run(tmp_path / "every40", [30.0])
    table = tmp_path / "choice.tsv"
    main(["--table", str(table), str(a), str(b)])
    before = table.read_bytes()
    ckpt = b / "checkpoint.pth"
    if case == "truncated":
        ckpt.write_bytes(ckpt.read_bytes()[:200])
        why = "not an ESPnet checkpoint"
    elif case == "no_valid_loss":
        torch.save({"reporter": Reporter().state_dict()}, ckpt)
        why = "no validation loss"
    else:
        torch.save({"model": {}}, ckpt)
        why = "not an ESPnet checkpoint"
    line = fails(main, ["--table", str(table), str(a), str(b)], capsys)
    assert line.startswith(f"select_on_dev: error: {ckpt}: ") and why in line, line
    assert "\n" not in line
    assert table.read_bytes() == before
