"""The fault matrix (issue #6): which entry point survives which fault on which backend, leaking what.

Tests say which cell they prove with a mark, one per cell (a test may prove several, and
`pytest.param(..., marks=pytest.mark.fault_case(...))` marks one parametrized case):

    @pytest.mark.fault_case("builder", "local", "client_sigkill")
    def test_...(fault_leaks, ...):
        ...                                   # inject the fault, run the documented recovery
        fault_leaks.assert_none(emulator=yellowdog_emulator, tag_stores=[store])

`fault_leaks.assert_none(...)` counts what is left alive (`raydog_core.testing.leaks.count_leaks`:
local processes under the test's RAYDOG_HOME, live emulator resources, Redis keys of the given tag
stores), records the number as the test's `("leaked_resources", n)` user property and asserts n == 0.
A test may instead append that property itself. When several tests share one cluster and apply faults
to it in turn, the test that finally tears the cluster down carries the same marks and records the
count: a cell passes only if every test marked for it passed, and its leak count is the sum of the
counts its tests recorded (a cell whose tests recorded none shows "?").

This plugin (loaded by `tests/conftest.py`) writes one JSON file per pytest session into
`$RAYDOG_FAULT_MATRIX_DIR` (default `build/fault-matrix/`) listing, for each (test, mark), the entry,
backend, fault, node id, outcome, leaked resources and duration. Merge every file into the Markdown
matrix with:

    python -m tests.fault_matrix report [DIR]

(a test recorded in several files counts with its latest run).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from raydog_core.tagstore import TagStore
from raydog_core.testing.emulator import Emulator
from raydog_core.testing.leaks import LeakCount, count_leaks

MARK = "fault_case"
ENTRIES = ("builder", "ray_up", "prefect", "airflow")
BACKENDS = ("local", "yellowdog")
FAULTS = (
    "head_script_fails",
    "worker_script_fails",
    "build_timeout",
    "transient_api_errors",
    "node_dies_mid_run",
    "client_sigterm",
    "client_sigkill",
    "corrupt_state",
    "stale_state",
    "lease_lapses",  # the client is SIGKILLed and nobody recovers: the cluster ends itself
)
NOT_APPLICABLE = {("local", "transient_api_errors"): "the local backend has no API to fail"}
LEAK_PROPERTY = "leaked_resources"
NOT_RUN = "\u2013"  # an en dash
BY = " \u00d7 "  # a multiplication sign between entry and backend
DIR_VARIABLE = "RAYDOG_FAULT_MATRIX_DIR"
DEFAULT_DIR = Path("build") / "fault-matrix"
_RESULTS = pytest.StashKey[dict[str, Any]]()
_PHASES = pytest.StashKey[dict[str, pytest.TestReport]]()


def fault_cells(
    entry: str, fault: str, *, ray: bool = False, backends: tuple[str, ...] = BACKENDS
) -> list[Any]:
    """One pytest.param per backend, marked as the (entry, backend, fault) cell it proves; `ray`: slow."""
    marks: list[Any] = [pytest.mark.slow] if ray else []
    return [
        pytest.param(backend, marks=[pytest.mark.fault_case(entry, backend, fault), *marks], id=backend)
        for backend in backends
    ]


def matrix_dir(config_root: Path | None = None) -> Path:
    configured = os.environ.get(DIR_VARIABLE)
    if configured:
        return Path(configured)
    return (config_root or Path.cwd()) / DEFAULT_DIR


def cells_of(item: pytest.Item) -> list[tuple[str, str, str]]:
    """The (entry, backend, fault) cells a test's marks claim; a typo is a collection error."""
    cells = []
    for mark in item.iter_markers(MARK):
        values = dict(zip(("entry", "backend", "fault"), mark.args, strict=False)) | mark.kwargs
        cell = (values.get("entry"), values.get("backend"), values.get("fault"))
        for value, allowed in zip(cell, (ENTRIES, BACKENDS, FAULTS), strict=True):
            if value not in allowed:
                raise pytest.UsageError(
                    f"{item.nodeid}: fault_case {cell}: {value!r} is not one of {allowed}"
                )
        if cell not in cells:
            cells.append(cell)
    return cells


# -- recording --------------------------------------------------------------------------------------


@dataclass
class LeakRecorder:
    """The `fault_leaks` fixture: counts leaks, records the number on the test, asserts it is zero."""

    item: pytest.Item
    home: Path
    counts: list[LeakCount] = field(default_factory=list)
    # What was left before the test began (an earlier test's leak fails that test, not every later one).
    earlier: LeakCount | None = None

    def wait_until_nothing_runs(self, *, emulator: Emulator | None = None, timeout_s: float) -> float:
        """Until no process and no emulator resource of the test is alive (files aside: a listing tidies
        those away); records nothing. Returns the seconds waited, a figure for the test to print."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            left = count_leaks(self.home, emulator=emulator, wait_s=0, besides=self.earlier)
            if not (left.processes or left.emulator):
                break
            time.sleep(1.0)
        return time.monotonic() - started

    def count(
        self,
        *,
        emulator: Emulator | None = None,
        tag_stores: list[TagStore] | tuple = (),
        wait_s: float = 15.0,
    ) -> LeakCount:
        """Count and record (without asserting): for tests that assert something more specific."""
        leaks = count_leaks(
            self.home, emulator=emulator, tag_stores=tag_stores, wait_s=wait_s, besides=self.earlier
        )
        self.counts.append(leaks)
        total = sum(c.total for c in self.counts)
        props = [p for p in self.item.user_properties if p[0] != LEAK_PROPERTY]
        self.item.user_properties[:] = [*props, (LEAK_PROPERTY, total)]
        return leaks

    def assert_none(
        self,
        *,
        emulator: Emulator | None = None,
        tag_stores: list[TagStore] | tuple = (),
        wait_s: float = 15.0,
    ) -> None:
        leaks = self.count(emulator=emulator, tag_stores=tag_stores, wait_s=wait_s)
        assert leaks.total == 0, leaks.describe()


@pytest.fixture
def fault_leaks(request: pytest.FixtureRequest, raydog_home: Path) -> LeakRecorder:
    return LeakRecorder(request.node, raydog_home, earlier=count_leaks(raydog_home, wait_s=0))


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_RESULTS] = {"started": time.time(), "records": []}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        cells_of(item)  # fail early on a misspelt mark


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    cells = cells_of(item)
    if not cells:
        return report
    phases = item.stash.setdefault(_PHASES, {})
    phases[report.when] = report
    if report.when == "teardown":
        _record(item, cells, phases)
    return report


def _record(
    item: pytest.Item, cells: list[tuple[str, str, str]], phases: dict[str, pytest.TestReport]
) -> None:
    if any(r.failed or hasattr(r, "wasxfail") for r in phases.values()):
        outcome = "failed"  # an expected failure is a known defect: the cell has not passed
    elif any(r.skipped for r in phases.values()):
        outcome = "skipped"
    else:
        outcome = "passed"
    leaked = next((value for key, value in item.user_properties if key == LEAK_PROPERTY), None)
    duration = round(sum(r.duration for r in phases.values()), 2)
    records = item.config.stash[_RESULTS]["records"]
    for entry, backend, fault in cells:
        records.append(
            {
                "entry": entry,
                "backend": backend,
                "fault": fault,
                "nodeid": item.nodeid,
                "outcome": outcome,
                "leaked_resources": leaked,
                "duration_s": duration,
            }
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    results = session.config.stash.get(_RESULTS, None)
    if not results or not results["records"]:
        return
    directory = matrix_dir(session.config.rootpath)
    directory.mkdir(parents=True, exist_ok=True)
    started = results["started"]
    name = time.strftime("%Y%m%d-%H%M%S", time.localtime(started)) + f"-{os.getpid()}.json"
    payload = {"started": started, "python": sys.version.split()[0], "records": results["records"]}
    (directory / name).write_text(json.dumps(payload, indent=1))


# -- the report -------------------------------------------------------------------------------------


@dataclass
class Cell:
    outcomes: list[str] = field(default_factory=list)
    leaks: list[int | None] = field(default_factory=list)
    tests: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def ran(self) -> bool:
        return any(o in ("passed", "failed") for o in self.outcomes)

    @property
    def passed(self) -> bool:
        return self.ran and "failed" not in self.outcomes

    @property
    def leaked(self) -> int | None:
        counted = [n for n in self.leaks if n is not None]
        return sum(counted) if counted else None


def load_records(directory: Path) -> list[dict[str, Any]]:
    """Every record of every session file; a test recorded in several sessions keeps only its latest run
    (with the cells that run claimed, so a mark removed since no longer counts)."""
    latest: dict[str, tuple[float, list[dict[str, Any]]]] = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text())
        by_test: dict[str, list[dict[str, Any]]] = {}
        for record in data["records"]:
            by_test.setdefault(record["nodeid"], []).append(record)
        for nodeid, records in by_test.items():
            if nodeid not in latest or latest[nodeid][0] <= data["started"]:
                latest[nodeid] = (data["started"], records)
    return [record for _, records in latest.values() for record in records]


def build_cells(records: list[dict[str, Any]]) -> dict[tuple[str, str, str], Cell]:
    cells: dict[tuple[str, str, str], Cell] = {}
    for record in records:
        cell = cells.setdefault((record["entry"], record["backend"], record["fault"]), Cell())
        cell.outcomes.append(record["outcome"])
        cell.leaks.append(record["leaked_resources"])
        cell.tests.append(record["nodeid"])
        cell.duration_s += record.get("duration_s") or 0.0
    return cells


def _cell_text(backend: str, fault: str, cell: Cell | None) -> str:
    if (backend, fault) in NOT_APPLICABLE:
        return "n/a"
    if cell is None or not cell.ran:
        return NOT_RUN
    leaked = "?" if cell.leaked is None else str(cell.leaked)
    return f"{'✓' if cell.passed else '✗'} {leaked}"


def render(cells: dict[tuple[str, str, str], Cell]) -> str:
    header = f"| entry{BY}backend | " + " | ".join(f.replace("_", " ") for f in FAULTS) + " |"
    lines = [
        "Cell: ✓ passed / ✗ failed, then the resources left alive (processes, emulator resources, Redis keys;",
        f"? = not counted); n/a = not applicable; {NOT_RUN} = not run.",
        "",
        header,
        "|" + " --- |" * (len(FAULTS) + 1),
    ]
    for entry in ENTRIES:
        for backend in BACKENDS:
            row = [_cell_text(backend, fault, cells.get((entry, backend, fault))) for fault in FAULTS]
            lines.append(f"| {entry}{BY}{backend} | " + " | ".join(row) + " |")
    applicable = [
        (entry, backend, fault)
        for entry in ENTRIES
        for backend in BACKENDS
        for fault in FAULTS
        if (backend, fault) not in NOT_APPLICABLE
    ]
    ran = [key for key in applicable if key in cells and cells[key].ran]
    passed = [key for key in ran if cells[key].passed]
    leaked = sum(cells[key].leaked or 0 for key in ran)
    uncounted = [key for key in ran if cells[key].leaked is None]
    tests = {t for key in ran for t in cells[key].tests}
    lines += [
        "",
        f"Cases run: {len(ran)} of {len(applicable)} applicable ({len(tests)} tests); "
        f"passed: {len(passed)}; resources leaked: {leaked}"
        + (f"; cases without a leak count: {len(uncounted)}" if uncounted else ""),
        "Not applicable: "
        + "; ".join(f"{fault} on {backend} ({why})" for (backend, fault), why in NOT_APPLICABLE.items())
        + ".",
    ]
    failed = [key for key in ran if not cells[key].passed]
    if failed:
        lines += ["", "Failed cases:"]
        for key in failed:
            bad = [t for t, o in zip(cells[key].tests, cells[key].outcomes, strict=True) if o == "failed"]
            lines.append(f"- {BY.join(key)}: " + ", ".join(bad))
    return "\n".join(lines) + "\n"


def render_details(cells: dict[tuple[str, str, str], Cell]) -> str:
    lines = ["| entry | backend | fault | result | leaked | tests |", "| --- | --- | --- | --- | --- | --- |"]
    for (entry, backend, fault), cell in sorted(cells.items(), key=lambda kv: _order(kv[0])):
        result = "passed" if cell.passed else ("failed" if cell.ran else "skipped")
        leaked = "?" if cell.leaked is None else str(cell.leaked)
        tests = "<br>".join(f"`{t}`" for t in cell.tests)
        lines.append(f"| {entry} | {backend} | {fault} | {result} | {leaked} | {tests} |")
    return "\n".join(lines) + "\n"


def _order(key: tuple[str, str, str]) -> tuple[int, int, int]:
    entry, backend, fault = key
    return ENTRIES.index(entry), BACKENDS.index(backend), FAULTS.index(fault)


def main(argv: list[str]) -> int:
    if not argv or argv[0] != "report" or len(argv) > 3:
        print("usage: python -m tests.fault_matrix report [DIR] [--details]", file=sys.stderr)
        return 2
    args = argv[1:]
    details = "--details" in args
    paths = [a for a in args if a != "--details"]
    directory = Path(paths[0]) if paths else matrix_dir()
    if not directory.is_dir():
        print(f"no fault matrix results in {directory}: run the tests first", file=sys.stderr)
        return 1
    cells = build_cells(load_records(directory))
    print(render(cells), end="")
    if details:
        print()
        print(render_details(cells), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
