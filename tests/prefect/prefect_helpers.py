"""Helpers shared by the Prefect tests (imported by module name: the test directory is on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from raydog_core.backends.base import ClusterRecord
from raydog_core.backends.local.backend import LocalBackend

FLOW_SCRIPT = Path(__file__).with_name("flow_process.py")


def clusters_of_flow_run(backend: LocalBackend, flow_run_id: object) -> list[ClusterRecord]:
    from raydog_prefect import FLOW_RUN_LABEL

    return [c for c in backend.list_clusters() if c.labels.get(FLOW_RUN_LABEL) == str(flow_run_id)]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def start_flow_process(
    tmp_path: Path,
    ready: Callable[[Path], object],
    config_json: str | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen:
    """Start flow_process.py (the cluster config given as JSON, else its own) against this session's
    Prefect server; returns once `ready(marker)` holds (the marker exists once its task runs on Ray)."""
    from prefect.settings import PREFECT_API_URL

    marker = tmp_path / "task-running"
    argv = [sys.executable, str(FLOW_SCRIPT), str(marker)]
    if config_json is not None:
        config_file = tmp_path / "cluster-config.json"
        config_file.write_text(config_json)
        argv.append(str(config_file))
    process = subprocess.Popen(
        argv,
        env={**os.environ, **(env or {}), "PREFECT_API_URL": PREFECT_API_URL.value()},
        stdout=open(tmp_path / "flow.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: ready(marker) or process.poll() is not None, 240, "the flow process to get going")
        if process.poll() is not None:
            raise AssertionError(f"the flow process ended early: {flow_output(tmp_path)}")
    except BaseException:
        process.kill()
        process.wait()
        raise
    return process


def flow_output(tmp_path: Path) -> str:
    return (tmp_path / "flow.log").read_text()[-3000:]


def flow_run_logs(flow_run_id: object) -> list[str]:
    """Messages of every log the API holds for a flow run (flow and task runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # this process batches its own logs too
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id={"any_": [flow_run_id]}))
    return [entry.message for entry in logs]
