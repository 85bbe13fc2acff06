"""The flow's process told to stop (SIGTERM) or killed outright (SIGKILL, then the crash hook)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL
from prefect_helpers import wait_until

from raydog_core.backends.local.backend import LocalBackend
from raydog_prefect import FLOW_RUN_LABEL, shut_down_flow_run_cluster

pytestmark = pytest.mark.slow

FLOW_SCRIPT = Path(__file__).with_name("flow_process.py")


def start_flow_process(tmp_path: Path, backend: LocalBackend) -> tuple[subprocess.Popen, str]:
    """Start the flow in its own process; returns it and its flow-run id once its task runs on Ray."""
    marker = tmp_path / "task-running"
    before = {c.cluster_id for c in backend.list_clusters()}
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    process = subprocess.Popen(
        [sys.executable, str(FLOW_SCRIPT), str(marker)],
        env=env,
        stdout=open(tmp_path / "flow.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(marker.exists, 240, "the flow's task to run on its cluster")
    except BaseException:
        process.kill()
        process.wait()
        raise
    (record,) = [c for c in backend.list_clusters() if c.cluster_id not in before]
    return process, record.labels[FLOW_RUN_LABEL]


def test_sigterm_to_the_flow_process_shuts_its_cluster_down(tmp_path: Path, backend: LocalBackend) -> None:
    process, _flow_run_id = start_flow_process(tmp_path, backend)
    assert backend.live_resources()
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(timeout=120)
    output = (tmp_path / "flow.log").read_text()[-3000:]
    assert returncode != 0
    assert backend.live_resources() == [], f"exit code {returncode}; {output}"


def test_sigkill_then_the_crash_hook_shuts_it_down_once(tmp_path: Path, backend: LocalBackend) -> None:
    from flow_process import signalled_flow

    process, flow_run_id = start_flow_process(tmp_path, backend)
    process.kill()  # no Python code runs in the flow's process
    process.wait(timeout=60)
    assert backend.live_resources(), "a SIGKILLed flow process cannot have shut its cluster down"

    # What Prefect's runner or worker does when it notices the crash: call the flow's on_crashed hooks.
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
    first = shut_down_flow_run_cluster(signalled_flow, flow_run, flow_run.state)
    assert [r.cluster.labels[FLOW_RUN_LABEL] for r in first] == [flow_run_id]
    assert backend.live_resources() == []
    assert shut_down_flow_run_cluster(signalled_flow, flow_run, flow_run.state) == []  # second: nothing to do
