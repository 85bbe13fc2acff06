"""The flow's process told to stop (SIGTERM) or killed outright (SIGKILL, then the crash hook), while its
task runs on a local cluster. (The same faults during the build and on YellowDog: test_fault_matrix.py.)"""

from __future__ import annotations

import signal
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect_helpers import flow_output, start_flow_process

from raydog_core.backends.local.backend import LocalBackend
from raydog_prefect import FLOW_RUN_LABEL, shut_down_flow_run_cluster

pytestmark = pytest.mark.slow


def start_signalled_flow(tmp_path: Path, backend: LocalBackend) -> tuple[object, str]:
    """The flow in its own process, once its task runs on Ray; returns it and its flow-run id."""
    before = {c.cluster_id for c in backend.list_clusters()}
    process = start_flow_process(tmp_path, ready=Path.exists)
    (record,) = [c for c in backend.list_clusters() if c.cluster_id not in before]
    return process, record.labels[FLOW_RUN_LABEL]


@pytest.mark.fault_case("prefect", "local", "client_sigterm")
def test_sigterm_to_the_flow_process_shuts_its_cluster_down(
    tmp_path: Path, backend: LocalBackend, fault_leaks
) -> None:
    """SIGTERM mid-run: the runner shuts the cluster down before the process exits (no hook needed)."""
    process, _flow_run_id = start_signalled_flow(tmp_path, backend)
    assert backend.live_resources()
    process.send_signal(signal.SIGTERM)
    returncode = process.wait(timeout=120)
    assert returncode != 0
    assert backend.live_resources() == [], f"exit code {returncode}; {flow_output(tmp_path)}"
    fault_leaks.assert_none()


@pytest.mark.fault_case("prefect", "local", "client_sigkill")
def test_sigkill_then_the_crash_hook_shuts_it_down_once(
    tmp_path: Path, backend: LocalBackend, fault_leaks
) -> None:
    """SIGKILL mid-run: nothing runs in the flow's process; the documented recovery is the flow's
    on_crashed hook, which Prefect's runner or worker calls: it finds the cluster by its label."""
    from flow_process import signalled_flow

    process, flow_run_id = start_signalled_flow(tmp_path, backend)
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
    fault_leaks.assert_none()
