"""What a test runs inside its DAG run, between two tasks: `dag.test()` runs the tasks in the test's own
process, so a task of a test DAG can call back into the test (to move the emulator's clock, say)."""

from __future__ import annotations

from collections.abc import Callable

BETWEEN_BUILD_AND_JOB: list[Callable[[], None]] = []


def run_between_build_and_job() -> None:
    for hook in BETWEEN_BUILD_AND_JOB:
        hook()
