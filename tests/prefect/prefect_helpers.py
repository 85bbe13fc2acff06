"""Helpers shared by the Prefect tests (imported by module name: the test directory is on sys.path)."""

from __future__ import annotations

import time
from collections.abc import Callable

from raydog_core.backends.base import ClusterRecord
from raydog_core.backends.local.backend import LocalBackend


def clusters_of_flow_run(backend: LocalBackend, flow_run_id: object) -> list[ClusterRecord]:
    from raydog_prefect import FLOW_RUN_LABEL

    return [c for c in backend.list_clusters() if c.labels.get(FLOW_RUN_LABEL) == str(flow_run_id)]


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


def flow_run_logs(flow_run_id: object) -> list[str]:
    """Messages of every log the API holds for a flow run (flow and task runs)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=30)  # this process batches its own logs too
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id={"any_": [flow_run_id]}))
    return [entry.message for entry in logs]
