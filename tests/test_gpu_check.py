"""benchmarks/gpu_check: its dry run on the CPU, and the script's refusal without CUDA."""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from helpers import ROOT


def test_dry_run_trains_checks_masks_times_and_decodes(capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from gpu_check import main
    finally:
        sys.path.pop(0)
    main(["--device", "cpu", "--tiny", "--steps", "3", "--repeats", "1", "--utterances", "1"])
    out = capsys.readouterr().out
    assert "masks on cpu, never copied" in out
    assert "pathways-mixed" in out and "gpu_check: OK" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the check would run")
def test_script_without_cuda_stops_with_a_clear_message():
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")],
                          capture_output=True, text=True, env={"PYTHON": sys.executable,
                                                               "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1
    assert "CUDA is not available" in proc.stderr
