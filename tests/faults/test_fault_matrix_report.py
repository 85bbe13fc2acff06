"""The fault-matrix report: cells merged from several sessions, outcomes, leak sums and totals."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fault_matrix import build_cells, load_records, main, render


def record(fault: str, nodeid: str, outcome: str, leaked: int | None, backend: str = "local") -> dict:
    return {
        "entry": "builder",
        "backend": backend,
        "fault": fault,
        "nodeid": nodeid,
        "outcome": outcome,
        "leaked_resources": leaked,
        "duration_s": 1.0,
    }


def write_session(directory: Path, name: str, started: float, records: list[dict]) -> None:
    (directory / name).write_text(json.dumps({"started": started, "records": records}))


def test_cells_totals_and_the_latest_run_of_a_test_wins(tmp_path: Path, capsys) -> None:
    write_session(
        tmp_path,
        "a.json",
        1.0,
        [
            record("client_sigkill", "t::kill", "failed", 3),
            record("stale_state", "t::stale", "passed", 0),
            record("stale_state", "t::down", "passed", None),
            record("build_timeout", "t::slow", "skipped", None),
        ],
    )
    write_session(tmp_path, "b.json", 2.0, [record("client_sigkill", "t::kill", "passed", 0)])
    cells = build_cells(load_records(tmp_path))
    text = render(cells)
    row = next(line for line in text.splitlines() if line.startswith("| builder \u00d7 local |"))
    cells_of_row = [c.strip() for c in row.strip("|").split("|")][1:]
    assert cells_of_row[2] == "\u2013"  # build_timeout: skipped, so not run
    assert cells_of_row[3] == "n/a"  # transient API errors on the local backend
    assert cells_of_row[6] == "\u2713 0"  # client_sigkill: the rerun passed
    assert cells_of_row[8] == "\u2713 0"  # stale_state: two tests, one counted
    assert "Cases run: 2 of 76 applicable (3 tests); passed: 2; resources leaked: 0" in text
    assert main(["report", str(tmp_path)]) == 0
    assert capsys.readouterr().out == text


def test_a_failed_case_and_an_uncounted_one_are_listed(tmp_path: Path) -> None:
    write_session(
        tmp_path,
        "a.json",
        1.0,
        [
            record("corrupt_state", "t::bad", "failed", 2, "yellowdog"),
            record("stale_state", "t::x", "passed", None),
        ],
    )
    text = render(build_cells(load_records(tmp_path)))
    assert "\u2717 2" in text and "\u2713 ?" in text
    assert "passed: 1; resources leaked: 2; cases without a leak count: 1" in text
    assert "- builder \u00d7 yellowdog \u00d7 corrupt_state: t::bad" in text
