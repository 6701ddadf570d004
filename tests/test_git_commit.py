"""RESULTS.md's "Git commit" row: HEAD, flagged when the code differs from it, not when
the results files the pipeline writes do (stage 16 rewrites RESULTS.md after stage 13)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from espnet_pathways.reporting.results import git_commit


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def test_results_files_do_not_make_the_commit_dirty(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    for name in ("run.sh", "RESULTS.md", "RESULTS_add_cs.md"):
        (tmp_path / name).write_text("a\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "RESULTS.md").write_text("new results\n")
    (tmp_path / "RESULTS_add_cs.md").write_text("new results\n")
    (tmp_path / "untracked.txt").write_text("x\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "run.sh").write_text("b\n")
    assert git_commit(tmp_path) == head + " (uncommitted changes)"
