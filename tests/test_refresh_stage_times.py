"""refresh_stage_times: a report written inside a stage gets that stage's time once it
is recorded (stage 16's row, stage 21's in the add-language report), and a rerun stage
shows its latest time; nothing else in the file changes, other languages' blocks
included."""
from __future__ import annotations

from pathlib import Path

from espnet_pathways.bin.refresh_stage_times import main


def times_file(tmp_path: Path, rows: str) -> Path:
    p = tmp_path / "stage_times.tsv"
    p.write_text(rows)
    return p


MAIN = ("2026-01-01 10:00:00\t5\ttrain the dense multilingual transducer\t600\n"
        "2026-01-01 10:10:00\t13\tRESULTS.md\t6\n")
ADD = ("2026-01-02 10:00:00\t18\tadd cs: data\t60\n"
       "2026-01-02 10:00:00\t18\tadd pl: data\t30\n")


def results_text(main_table: str, cs_table: str, pl_table: str) -> str:
    return ("# Results\n\n## Stage timings\n\n" + main_table + "\n\n## Environment\n\nx\n"
            "<!-- add_language:pl -->\n## Adding a language: pl\n\n### Stage timings\n\n"
            + pl_table + "\n<!-- /add_language:pl -->\n"
            "<!-- add_language:cs -->\n## Adding a language: cs\n\n### Stage timings\n\n"
            + cs_table + "\n<!-- /add_language:cs -->\n")


def test_main_table_gets_the_stage_recorded_after_the_report(tmp_path: Path) -> None:
    times = times_file(tmp_path, MAIN + ADD)
    res = tmp_path / "RESULTS.md"
    res.write_text(results_text("| Stage | What |\n|---|---|\n| 5 | old |", "| cs |", "| pl |"))
    with open(times, "a") as f:  # stage 16 ends after it wrote RESULTS.md; 13 rerun
        f.write("2026-01-01 10:20:00\t16\tdeployment table (fp32 vs int8)\t120\n"
                "2026-01-01 10:30:00\t13\tRESULTS.md\t12\n")
    main(["--stage_times", str(times), "--results", str(res)])
    text = res.read_text()
    table = text.split("## Stage timings\n\n", 1)[1].split("\n\n## Environment", 1)[0]
    assert "| 16 | deployment table (fp32 vs int8) | 2026-01-01 10:20:00 | 2.0 |" in table
    assert "| 13 | RESULTS.md | 2026-01-01 10:30:00 | 0.2 |" in table
    assert "|  | total |  | 12.2 |" in table and "old" not in table
    # the first stage 13 and 16 runs are counted in the last row (reruns included)
    assert table.count("| 13 |") == 1
    recorded = sum(int(line.split("\t")[3]) for line in times.read_text().splitlines()
                   if 1 <= int(line.split("\t")[1]) <= 17)
    assert f"|  | all recorded runs of these stages (reruns included) |  | {recorded / 60:.1f} |" \
        in table
    assert "| cs |" in text and "| pl |" in text  # the add-language tables untouched


def test_add_language_table_is_refreshed_in_its_block_and_report(tmp_path: Path) -> None:
    times = times_file(tmp_path, MAIN + ADD + "2026-01-02 10:09:00\t21\tadd cs: decode\t240\n")
    res, add = tmp_path / "RESULTS.md", tmp_path / "RESULTS_add_cs.md"
    res.write_text(results_text("| main |", "| cs old |", "| pl |"))
    add.write_text("# Results: adding a language\n\n## Adding a language: cs\n\n| System |\n\n"
                   "### Stage timings\n\nn/a\n")
    main(["--stage_times", str(times), "--results", str(res), "--results", str(add),
          "--add_language", "cs"])
    for path in (res, add):
        text = path.read_text()
        assert "| 21 | add cs: decode | 2026-01-02 10:09:00 | 4.0 |" in text, path
        assert "add pl" not in text and "| cs old |" not in text
    text = res.read_text()
    assert "| main |" in text and "| pl |" in text
    assert add.read_text().startswith("# Results: adding a language\n\n## Adding a language: cs\n\n| System |\n")


def test_a_file_without_the_table_is_left_alone(tmp_path: Path) -> None:
    times = times_file(tmp_path, MAIN)
    res = tmp_path / "RESULTS.md"
    res.write_text("# Results\n\nno timings here\n")
    main(["--stage_times", str(times), "--results", str(res), "--results", str(tmp_path / "none.md")])
    assert res.read_text() == "# Results\n\nno timings here\n"


def test_a_rerun_that_reused_earlier_runs_says_so(tmp_path: Path) -> None:
    """A stage rerun that found trainings/decodings done (5th column) took less than the
    stage costs: its Minutes cell says how many runs it reused; a 4-column line (written
    before the column existed) reads as none reused."""
    times = times_file(tmp_path, MAIN + "2026-01-01 10:40:00\t5\ttrain the dense "
                       "multilingual transducer\t30\t1\n2026-01-01 10:50:00\t13\tRESULTS.md\t6\t0\n")
    res = tmp_path / "RESULTS.md"
    res.write_text(results_text("| old |", "| cs |", "| pl |"))
    main(["--stage_times", str(times), "--results", str(res)])
    table = res.read_text().split("## Stage timings\n\n", 1)[1].split("\n\n## Environment")[0]
    assert "| 5 | train the dense multilingual transducer | 2026-01-01 10:40:00 | " \
        "0.5 (1 run reused) |" in table
    assert "| 13 | RESULTS.md | 2026-01-01 10:50:00 | 0.1 |" in table


def test_a_malformed_times_file_is_one_line_and_the_results_stay(tmp_path: Path, capsys) -> None:
    import pytest

    from espnet_pathways.bin._cli import run

    times = times_file(tmp_path, MAIN + "2026-01-01 10:20:00\tsixteen\tdeploy\t120\n")
    res = tmp_path / "RESULTS.md"
    res.write_text(results_text("| main |", "| cs |", "| pl |"))
    before = res.read_text()
    with pytest.raises(SystemExit) as e:
        run(main, ["--stage_times", str(times), "--results", str(res)])
    assert e.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{times}:3" in err[0], err
    assert res.read_text() == before
