"""The joint-size benchmark runs on the tiny model and prints one row per size.

The figures themselves are not asserted (speed lives in benchmarks, not tests); what is
checked is that each requested size builds a model of that joint size, that the first
size is the reference (ratio 1.00) and that a smaller joint space has fewer parameters.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_joint_size_prints_a_row_per_size(monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_joint_size", ROOT / "benchmarks" / "bench_joint_size.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    monkeypatch.setattr(sys, "argv", [
        "bench_joint_size.py", "--config", str(ROOT / "tests" / "conf" / "train_tiny.yaml"),
        "--sizes", "32", "16", "--batches", "2", "--repeats", "1", "--threads", "1"])
    bench.main()
    out = capsys.readouterr().out.splitlines()
    rows = [line.split() for line in out if line.split() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["32", "16"]
    assert rows[0][3] == "1.00"
    assert int(rows[1][1]) < int(rows[0][1])
    assert any("synthetic lengths" in line for line in out)
