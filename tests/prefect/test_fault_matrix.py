"""The fault matrix (issue #6) for Prefect flows on RayDogTaskRunner, on the local backend and on
YellowDog (the real yellowdog-sdk against the emulator): each fault ends with a clear flow-run state and,
after the documented recovery, nothing alive (`fault_leaks` counts processes and emulator resources).

Faults that strike before Ray would run (a node script failing, a build that never finishes, a signal
during the build, corrupt or stale state) use stand-in node scripts and cost a few seconds; the faults
that need Ray at work (transient API errors, a node dying mid-run) run real clusters and are `slow`.
SIGTERM and SIGKILL of a flow whose task runs on a local cluster are in test_signals.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest
from fault_helpers import (
    FAILING_SCRIPT,
    LISTEN_SCRIPT,
    SLEEP_SCRIPT,
    Target,
    backend_cells,
)
from flow_process import signalled_flow_for
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import BlockDocumentUpdate
from prefect.client.schemas.filters import FlowFilter, FlowRunFilter
from prefect.client.schemas.objects import State
from prefect.settings import PREFECT_API_URL
from prefect_helpers import flow_output, start_flow_process, wait_until

from raydog_core import lifecycle
from raydog_core.backends import create_backend
from raydog_core.backends.base import NodeRole
from raydog_core.cluster import RayDogCluster
from raydog_core.errors import BuildTimeoutError, NodeFailedError
from raydog_core.reaper import list_and_tidy
from raydog_prefect import FLOW_RUN_LABEL, RayDogClusterConfig, RayDogTaskRunner, shut_down_flow_run_cluster
from raydog_prefect.labels import flow_run_labels


@pytest.fixture
def target(request: pytest.FixtureRequest, raydog_home: Path) -> Target:
    """The backend the test is parametrized with; the emulator (module-scoped) only when needed."""
    if request.param == "yellowdog":
        emulator = request.getfixturevalue("yellowdog_emulator")
        emulator.faults.error_rate = 0.0
        return Target("yellowdog", emulator)
    return Target("local")


@pytest.fixture
def quick_stand_in_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in head (no Ray, so no dashboard) is trusted after 1 s of listening instead of 10 s."""
    monkeypatch.setattr(lifecycle, "HEAD_WITHOUT_DASHBOARD_S", 1.0)


@task
def square(x: int) -> int:
    return x * x


def one_task_flow(config: RayDogClusterConfig | str, name: str = "one-task", **flow_options):
    @flow(name=name, task_runner=RayDogTaskRunner(cluster=config), **flow_options)
    def one_task() -> int:
        return square.submit(7).result()

    return one_task


def run_failing_flow(config: RayDogClusterConfig | str) -> tuple[State, Exception]:
    """Run a one-task flow whose cluster cannot be provided: the call raises the runner's error (raised
    by the first submission, inside the flow run); returns the run's state in the API too."""
    name = f"fault-{uuid4().hex[:12]}"
    with pytest.raises(Exception) as raised:
        one_task_flow(config, name)()
    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(flow_filter=FlowFilter(name={"any_": [name]}))
    return flow_run.state, raised.value


def assert_failed_with(state: State, error: Exception) -> None:
    """The run is Failed in the API (not left Running) and its message carries the runner's error."""
    assert state.is_failed(), state
    assert type(error).__name__ in state.message and str(error).splitlines()[0] in state.message, (
        state.message
    )


# -- node scripts fail --------------------------------------------------------------------------------


def assert_names_the_script_failure(target: Target, error: Exception) -> None:
    """Locally the error quotes the script's last lines; YellowDog's API reports only the exit code
    (the task's output stays on the node)."""
    if target.emulator is None:
        assert "code 3" in str(error) and "cannot start (on purpose)" in str(error), str(error)
    else:
        assert "exit code 3" in str(error), str(error)


@pytest.mark.parametrize(
    "target",
    [*backend_cells("head_script_fails")],
    indirect=True,
)
def test_a_failing_head_script_fails_the_flow_run_clearly(target: Target, fault_leaks) -> None:
    """The head's script exits 3 at once: the flow call raises NodeFailedError naming the head node and
    the exit code (locally also the script's last lines), the run is Failed in the API with that
    message, no task ran, and the build removed what it had created."""
    state, error = run_failing_flow(target.config("head-fails", head_node_ray_start_script=FAILING_SCRIPT))
    assert_failed_with(state, error)
    assert isinstance(error, NodeFailedError) and error.role == "head", repr(error)
    assert_names_the_script_failure(target, error)
    # The run's page explains it after the cluster is gone: the post-mortem names the failed head.
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            flow_run_filter=FlowRunFilter(id={"any_": [str(state.state_details.flow_run_id)]})
        )
    (post_mortem,) = [a for a in artifacts if a.key == "raydog-post-mortem"]
    assert "build failed: NodeFailedError" in str(post_mortem.data) and "| head | failed |" in str(
        post_mortem.data
    )
    fault_leaks.assert_none(emulator=target.emulator)


@pytest.mark.parametrize("target", backend_cells("worker_script_fails"), indirect=True)
def test_a_failing_worker_script_fails_the_flow_run_clearly(
    target: Target, fault_leaks, quick_stand_in_head
) -> None:
    """The head comes up (a stand-in that only listens), then the worker's script exits 3: the run
    fails with an error naming the worker node and its log; head and worker are gone."""
    config = target.config(
        "worker-fails",
        workers=1,
        head_node_ray_start_script=LISTEN_SCRIPT,
        worker_pool={"worker_node_task_script": FAILING_SCRIPT},
    )
    state, error = run_failing_flow(config)
    assert_failed_with(state, error)
    assert isinstance(error, NodeFailedError) and error.role == "worker", repr(error)
    assert_names_the_script_failure(target, error)
    fault_leaks.assert_none(emulator=target.emulator)


@pytest.mark.parametrize("target", backend_cells("build_timeout"), indirect=True)
def test_a_build_that_times_out_fails_the_flow_run(target: Target, fault_leaks) -> None:
    """The head never comes up (its script only sleeps) and build_timeout is 3 s: the run fails with
    BuildTimeoutError within seconds, and the half-built cluster is gone."""
    config = target.config(
        "too-slow", head_node_ray_start_script=SLEEP_SCRIPT, build_timeout=timedelta(seconds=3)
    )
    started = time.monotonic()
    state, error = run_failing_flow(config)
    assert time.monotonic() - started < 60
    assert_failed_with(state, error)
    assert isinstance(error, BuildTimeoutError) and "not up in time" in str(error), repr(error)
    fault_leaks.assert_none(emulator=target.emulator)


# -- the platform API fails now and then -------------------------------------------------------------


@pytest.mark.parametrize(
    "target", backend_cells("transient_api_errors", ray=True, backends=("yellowdog",)), indirect=True
)
def test_transient_api_errors_do_not_fail_the_flow_run(target: Target, fault_leaks) -> None:
    """One request in five to the platform fails (429/5xx) during the whole run, build to teardown:
    the flow completes, and nothing is left."""
    faults = target.emulator.faults
    injected_before = faults.injected_errors
    faults.error_rate = 0.2
    try:
        state = one_task_flow(target.config("flaky-api"))(return_state=True)
    finally:
        faults.error_rate = 0.0
    assert state.is_completed(), state
    assert state.result() == 49
    assert faults.injected_errors > injected_before
    fault_leaks.assert_none(emulator=target.emulator)


# -- a node dies mid-run ----------------------------------------------------------------------------------


@task
def hold_until_released(marker_dir: str, release: str) -> str:
    """Say on which node this runs, then wait (bounded) for the test to release it."""
    node_id = os.environ["RAYDOG_NODE_ID"]
    (Path(marker_dir) / f"{node_id}.{uuid4().hex}").write_text(node_id)
    deadline = time.monotonic() + 120
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return node_id


@pytest.mark.parametrize("target", backend_cells("node_dies_mid_run", ray=True), indirect=True)
def test_a_worker_dying_mid_run_the_flow_still_completes(target: Target, fault_leaks, tmp_path: Path) -> None:
    """Two tasks run, one on the head and one on the worker; the worker's machine dies (SIGKILL of
    its whole process session, or the emulator losing the instance). Ray re-runs the lost task on the
    head, the flow completes, and the teardown removes the cluster with its dead node."""
    markers, release = tmp_path / "markers", tmp_path / "release"
    markers.mkdir()
    config = target.config("node-dies", workers=1)
    backend = create_backend(config.backend, config.credentials())
    killed: list[str] = []
    flow_over = threading.Event()

    def kill_the_worker_once_both_tasks_run() -> None:
        try:
            wait_until(
                lambda: flow_over.is_set() or len(list(markers.iterdir())) >= 2, 300, "both tasks to run"
            )
            if flow_over.is_set():
                return
            (record,) = [c for c in backend.list_clusters() if c.name == "node-dies" and c.state == "running"]
            running_on = {path.read_text() for path in markers.iterdir()}
            worker = next(n for n in backend.list_nodes(record.cluster_id) if n.role == NodeRole.WORKER)
            assert worker.node_id in running_on, (worker.node_id, running_on)
            target.kill_node(backend, record.cluster_id, worker.node_id)
            killed.append(worker.node_id)
        finally:
            release.write_text("go")

    @flow(task_runner=RayDogTaskRunner(cluster=config), timeout_seconds=300)
    def two_holds() -> list[str]:
        futures = [hold_until_released.submit(str(markers), str(release)) for _ in range(2)]
        return [future.result() for future in futures]

    killer = threading.Thread(target=kill_the_worker_once_both_tasks_run, daemon=True)
    killer.start()
    try:
        state = two_holds(return_state=True)
    finally:
        flow_over.set()
        release.write_text("go")
        killer.join(timeout=60)
        backend.close()
    assert killed, "the worker was never killed"
    assert state.is_completed(), state
    nodes = state.result()
    assert len(nodes) == 2 and killed[0] not in nodes  # the lost task ran again, on the head
    if target.emulator is not None:  # a reclaimed spot worker: the platform starts its node's task again
        assert target.emulator.retries_of_task(killed[0]) == 1
    fault_leaks.assert_none(emulator=target.emulator)


# -- the flow's process is signalled while the cluster is being built ------------------------------------


def head_launched(backend, cluster_name: str) -> bool:
    records = [c for c in backend.list_clusters() if c.name == cluster_name and c.state == "running"]
    return bool(records) and bool(backend.list_nodes(records[0].cluster_id))


def start_building_flow(tmp_path: Path, target: Target, cluster_name: str):
    """A flow process whose cluster's head never comes up, once that head is launched; returns the
    process, the backend and the config the flow uses (with credentials, for the crash hook)."""
    config = target.config(cluster_name, head_node_ray_start_script=SLEEP_SCRIPT)
    backend = create_backend(config.backend, config.credentials())
    config_json = config.model_dump_json(exclude={"yellowdog_credentials"})
    process = start_flow_process(
        tmp_path,
        ready=lambda _marker: head_launched(backend, cluster_name),
        config_json=config_json,
        env=target.environment(),
    )
    return process, backend, config


@pytest.mark.parametrize("target", backend_cells("lease_lapses", ray=True), indirect=True)
def test_sigkill_with_no_hook_at_all_the_lease_lapses_and_the_cluster_ends_itself(
    target: Target, fault_leaks, tmp_path: Path
) -> None:
    """SIGKILL mid-run and no crash hook runs (the worker's host died with it): the flow run held a
    lease on its cluster, so the watchdog on its head ends it once `lease_timeout` has passed."""
    lease_timeout_s = 5
    config = target.config("lease-kill", lease_timeout=timedelta(seconds=lease_timeout_s))
    backend = create_backend(config.backend, config.credentials())
    try:
        process = start_flow_process(
            tmp_path,
            ready=Path.exists,
            config_json=config.model_dump_json(exclude={"yellowdog_credentials"}),
            # Emulated idle nodes and pools go after 5 s (30 s by default): the case measures the lease.
            env={**target.environment(), "RAYDOG_YELLOWDOG_IDLE_SHUTDOWN_S": "5"},
        )
        process.kill()
        process.wait(timeout=60)
        assert fault_leaks.count(emulator=target.emulator, wait_s=0).total > 0  # the kill did leave it
        fault_leaks.counts.clear()

        fault_leaks.wait_until_nothing_runs(emulator=target.emulator, timeout_s=lease_timeout_s + 60)
        ended = [c for c in list_and_tidy(backend) if c.name == "lease-kill"]  # what `raydog list` does
        assert all(c.state != "running" for c in ended), ended
    finally:
        backend.close()
    fault_leaks.assert_none(emulator=target.emulator, wait_s=0)


@pytest.mark.parametrize("target", backend_cells("client_sigterm"), indirect=True)
def test_sigterm_during_the_build_removes_the_half_built_cluster(
    target: Target, fault_leaks, tmp_path: Path
) -> None:
    """SIGTERM reaches the flow's process while the runner waits for the head: the build is
    interrupted and shuts down what it created before the process exits; the run ends Crashed and
    the on_crashed hook, running after it, finds nothing left."""
    process, backend, _config = start_building_flow(tmp_path, target, "term-build")
    try:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=120)
    finally:
        backend.close()
    output = flow_output(tmp_path)
    assert returncode != 0, output
    assert "build of cluster term-build failed; shutting down what was created" in output, output
    assert "Finished in state Crashed('Execution was aborted by a termination signal.')" in output, output
    assert "nothing to shut down, its task runner already did" in output  # the on_crashed hook, second
    fault_leaks.assert_none(emulator=target.emulator)


@pytest.mark.parametrize("target", backend_cells("client_sigkill"), indirect=True)
def test_sigkill_during_the_build_then_the_crash_hook_cleans_up(
    target: Target, fault_leaks, tmp_path: Path
) -> None:
    """SIGKILL during the build: nothing runs in the flow's process, so the half-built cluster stays.
    The documented recovery, the flow's on_crashed hook (as Prefect's runner or worker calls it),
    finds it by its flow-run label and removes it; run again, it has nothing to do."""
    process, backend, config = start_building_flow(tmp_path, target, "kill-build")
    try:
        process.kill()
        process.wait(timeout=60)
        (record,) = [c for c in backend.list_clusters() if c.name == "kill-build" and c.state == "running"]
    finally:
        backend.close()
    assert fault_leaks.count(emulator=target.emulator, wait_s=0).total > 0  # the kill did leave it
    fault_leaks.counts.clear()

    flow_run_id = record.labels[FLOW_RUN_LABEL]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(UUID(flow_run_id))
    crashed_flow = signalled_flow_for(config)
    first = shut_down_flow_run_cluster(crashed_flow, flow_run, flow_run.state)
    assert [r.cluster.cluster_id for r in first] == [record.cluster_id]
    assert shut_down_flow_run_cluster(crashed_flow, flow_run, flow_run.state) == []
    fault_leaks.assert_none(emulator=target.emulator)


# -- corrupt or stale state -------------------------------------------------------------------------------


@pytest.mark.parametrize("target", backend_cells("corrupt_state"), indirect=True)
def test_a_corrupted_saved_config_fails_the_run_before_any_resource(target: Target, fault_leaks) -> None:
    """The run's cluster config is a saved Block, and its stored document was corrupted (edited through
    the API to a value RayDog refuses): loading it when the run starts fails the run with an error
    naming the field and the fix, before any node or platform request."""
    name = f"corrupt-{target.backend}"
    config = target.config("corrupt")
    if target.emulator is not None:
        config.yellowdog_credentials.save(f"{name}-key", overwrite=True)
    config.save(name, overwrite=True)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(name, RayDogClusterConfig.get_block_type_slug())
        data = {**document.data, "cluster_name": "Not A Valid Name!"}
        client.update_block_document(document.id, BlockDocumentUpdate(data=data))
    calls_before = target.emulator.calls if target.emulator is not None else 0

    state, error = run_failing_flow(name)
    assert_failed_with(state, error)
    message = str(error)
    assert "cluster_name" in message and "Not A Valid Name!" in message, message
    if target.emulator is not None:
        assert target.emulator.calls == calls_before  # failed before talking to the platform
    fault_leaks.assert_none(emulator=target.emulator)


@flow
def finished_flow() -> int:
    return 1


def launch_stand_in_cluster(config: RayDogClusterConfig, flow_run_id: object) -> RayDogCluster:
    """A cluster of that flow run (labelled as the runner labels it), head launched, not waited for."""
    cluster = config.create_cluster(extra_labels=flow_run_labels(str(flow_run_id)))
    cluster.build(wait_for_head=False)
    return cluster


@pytest.mark.parametrize("target", backend_cells("stale_state"), indirect=True)
def test_a_cluster_outliving_its_flow_run_is_reaped_and_hooks_find_nothing(
    target: Target, fault_leaks, tmp_path: Path
) -> None:
    """Stale state: a flow run is over, but its cluster survived (its process was killed and no hook
    ran). `raydog reap --run-finished prefect` asks the Prefect API, removes that cluster and leaves
    the cluster of a run still scheduled alone; a crash hook arriving afterwards finds nothing to do."""
    over = finished_flow(return_state=True).state_details.flow_run_id
    with get_client(sync_client=True) as client:
        pending = client.create_flow_run(finished_flow)
    # Two names: on YellowDog a second cluster of the same name replaces the first (same work requirement).
    stale = launch_stand_in_cluster(
        target.config("stale-over", head_node_ray_start_script=SLEEP_SCRIPT), over
    )
    config = target.config("stale-current", head_node_ray_start_script=SLEEP_SCRIPT)
    current = launch_stand_in_cluster(config, pending.id)
    try:
        reaper = subprocess.run(
            [
                sys.executable,
                "-m",
                "raydog_core.cli",
                "reap",
                "--backend",
                target.backend,
                "--run-finished",
                "prefect",
            ],
            env={**os.environ, **target.environment(), "PREFECT_API_URL": PREFECT_API_URL.value()},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert reaper.returncode == 0, reaper.stderr
        assert f"({stale.cluster_id}): shut down" in reaper.stdout, reaper.stdout
        assert current.cluster_id not in reaper.stdout
        assert any(not n.status.is_final for n in current.nodes())  # still scheduled: left alone

        hooked_flow = signalled_flow_for(config)
        with get_client(sync_client=True) as client:
            over_run = client.read_flow_run(over)
            pending_run = client.read_flow_run(pending.id)
        assert shut_down_flow_run_cluster(hooked_flow, over_run, over_run.state) == []  # reaped already
        assert len(shut_down_flow_run_cluster(hooked_flow, pending_run, pending_run.state)) == 1
    finally:
        for cluster in (stale, current):
            cluster.shut_down()
    fault_leaks.assert_none(emulator=target.emulator)
