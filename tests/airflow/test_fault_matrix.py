"""The fault matrix (issue #6) for Airflow DAGs (real Airflow, dag.test(), real metadata database), on
the local backend and on YellowDog (the real yellowdog-sdk against the emulator): each fault ends with
a clear task failure or a successful run and, after the documented recovery, nothing alive
(`fault_leaks` counts processes and emulator resources).

Faults that strike before Ray would run (a node script failing, a build that never finishes, a signal
during the build, corrupt or stale state) use stand-in node scripts and cost a few seconds; the faults
that need Ray at work (transient API errors, a node dying mid-run) run real clusters and are `slow`.
SIGTERM of a task following a job on a local cluster is in test_dags.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dag_runs import task_states, xcom_value
from fault_helpers import (
    FAILING_SCRIPT,
    LISTEN_SCRIPT,
    SLEEP_SCRIPT,
    Target,
    backend_cells,
    load_backend_dag,
    running_cluster,
)

from raydog_airflow.cluster_xcom import POST_MORTEM_XCOM_KEY, STATE_XCOM_KEY
from raydog_airflow.labels import dag_run_labels
from raydog_core import lifecycle
from raydog_core.backends.base import NodeRole
from raydog_core.cluster import RayDogCluster
from raydog_core.processes import wait_until
from raydog_core.reaper import list_and_tidy

DAG_PROCESS = Path(__file__).with_name("dag_process.py")
BUILD_FAILED = {"build_cluster": "failed", "submit_job": "upstream_failed", "shut_down": "success"}


@pytest.fixture
def target(
    request: pytest.FixtureRequest, airflow_db: Path, raydog_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Target:
    """The backend the test is parametrized with, and its `raydog_fault_<backend>` connection."""
    emulator = request.getfixturevalue("yellowdog_emulator") if request.param == "yellowdog" else None
    if emulator is not None:
        emulator.faults.error_rate = 0.0
    chosen = Target(request.param, emulator)
    for key, value in chosen.connection_environment().items():
        monkeypatch.setenv(key, value)
    return chosen


@pytest.fixture
def quick_stand_in_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in head (no Ray, so no dashboard) is trusted after 1 s of listening instead of 10 s."""
    monkeypatch.setattr(lifecycle, "HEAD_WITHOUT_DASHBOARD_S", 1.0)


def run_fault_dag(target: Target, spec: dict[str, Any], entrypoint: str = "echo ok") -> Any:
    return load_backend_dag("raydog_test_faults", target.backend).test(
        run_conf={"spec": spec, "entrypoint": entrypoint}
    )


def task_log(capfd: pytest.CaptureFixture[str]) -> str:
    captured = capfd.readouterr()
    return captured.out + captured.err


# -- the build fails --------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", backend_cells("head_script_fails"), indirect=True)
def test_a_failing_head_script_fails_the_build_task(
    target: Target, fault_leaks, capfd: pytest.CaptureFixture[str]
) -> None:
    """The head's script exits 3: the build task fails with NodeFailedError naming the head and the
    exit code (locally also the script's last lines), the job is upstream_failed, the teardown runs on
    the partial state and finds nothing left (the build removed what it created); the run is failed."""
    dag_run = run_fault_dag(target, target.spec("head-fails", head_node_ray_start_script=FAILING_SCRIPT))
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == BUILD_FAILED
    log = task_log(capfd)
    assert "NodeFailedError" in log and "head node" in log and "exit" in log and "code 3" in log, log[-3000:]
    if target.emulator is None:
        assert "cannot start (on purpose)" in log
    cluster_id = xcom_value(dag_run, "build_cluster", STATE_XCOM_KEY)["cluster_id"]
    assert xcom_value(dag_run, "shut_down") == [cluster_id]
    # The teardown shows the post-mortem the failed build left: in its log, XCom and its button.
    (bundle,) = xcom_value(dag_run, "shut_down", POST_MORTEM_XCOM_KEY)
    assert bundle["cluster_id"] == cluster_id and Path(bundle["path"]).is_file()
    assert "build failed: NodeFailedError" in log and "| head | failed |" in log
    assert xcom_value(dag_run, "shut_down", "_link_PostMortemLink") == Path(bundle["path"]).as_uri()
    fault_leaks.assert_none(emulator=target.emulator)


@pytest.mark.parametrize(
    "target", backend_cells("worker_script_fails", backends=("yellowdog",)), indirect=True
)
def test_a_failing_worker_script_fails_the_build_task(
    target: Target, fault_leaks, quick_stand_in_head, capfd: pytest.CaptureFixture[str]
) -> None:
    """The head comes up (a stand-in that only listens), then the worker's script exits 3: the build
    task fails naming the worker, and head and worker are gone. (On the local backend with a real Ray
    head: test_dags.py::test_failing_build_partial_state_cleaned_up.)"""
    spec = target.spec(
        "worker-fails",
        workers=1,
        head_node_ray_start_script=LISTEN_SCRIPT,
        worker_pool={"worker_node_task_script": FAILING_SCRIPT},
    )
    dag_run = run_fault_dag(target, spec)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == BUILD_FAILED
    log = task_log(capfd)
    assert "NodeFailedError" in log and "worker node" in log and "exit code 3" in log, log[-3000:]
    assert "not retried: it would fail again" in log  # a broken script: the task's retries are not spent
    fault_leaks.assert_none(emulator=target.emulator)


@pytest.mark.parametrize("target", backend_cells("build_timeout"), indirect=True)
def test_a_build_that_times_out_fails_the_build_task(
    target: Target, fault_leaks, capfd: pytest.CaptureFixture[str]
) -> None:
    """The head never comes up (its script only sleeps) and build_timeout is 3 s: the build task fails
    with BuildTimeoutError within seconds, and the teardown finds nothing left."""
    started = time.monotonic()
    dag_run = run_fault_dag(
        target, target.spec("too-slow", head_node_ray_start_script=SLEEP_SCRIPT, build_timeout=3)
    )
    assert time.monotonic() - started < 90
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == BUILD_FAILED
    log = task_log(capfd)
    assert "BuildTimeoutError" in log and "not up in time" in log, log[-3000:]
    assert "not retried" not in log  # infrastructure: the task's retries, where it has any, are for this
    fault_leaks.assert_none(emulator=target.emulator)


# -- the platform API fails now and then -------------------------------------------------------------


@pytest.mark.parametrize(
    "target", backend_cells("transient_api_errors", ray=True, backends=("yellowdog",)), indirect=True
)
def test_transient_api_errors_do_not_fail_the_dag_run(
    target: Target, fault_leaks, capfd: pytest.CaptureFixture[str]
) -> None:
    """One request in five to the platform fails (429/5xx) through build, job and teardown: every
    task succeeds and nothing is left."""
    faults = target.emulator.faults
    injected_before = faults.injected_errors
    faults.error_rate = 0.2
    try:
        dag_run = run_fault_dag(
            target,
            target.spec("flaky-api"),
            entrypoint="python -c \"import ray; ray.init(); print('flaky job sees', len(ray.nodes()), 'node')\"",
        )
    finally:
        faults.error_rate = 0.0
    assert str(dag_run.state) == "success", task_states(dag_run)
    assert "flaky job sees 1 node" in task_log(capfd)
    assert faults.injected_errors > injected_before
    fault_leaks.assert_none(emulator=target.emulator)


# -- a node dies mid-run ----------------------------------------------------------------------------------

HOLDING_JOB = """
import os, sys, time, uuid, pathlib, ray
markers, release = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])

@ray.remote(num_cpus=1)
def hold():
    node = os.environ["RAYDOG_NODE_ID"]
    (markers / f"{node}.{uuid.uuid4().hex}").write_text(node)
    deadline = time.monotonic() + 120
    while not release.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    return node

ray.init()
print("tasks finished on", sorted(ray.get([hold.remote() for _ in range(2)])))
"""


@pytest.mark.parametrize("target", backend_cells("node_dies_mid_run", ray=True), indirect=True)
def test_a_worker_dying_mid_job_the_dag_run_still_succeeds(
    target: Target, fault_leaks, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The job runs two Ray tasks, one on the head and one on the worker; the worker's machine dies
    (SIGKILL of its whole process session, or the emulator losing the instance). Ray re-runs the lost
    task on the head, the job and the DAG run succeed, and the teardown removes the cluster with its
    dead node."""
    markers, release, job = tmp_path / "markers", tmp_path / "release", tmp_path / "holding_job.py"
    markers.mkdir()
    job.write_text(HOLDING_JOB)
    backend = target.open_backend()
    killed: list[str] = []
    run_over = threading.Event()

    def kill_the_worker_once_both_tasks_run() -> None:
        try:
            wait_until(lambda: run_over.is_set() or len(list(markers.iterdir())) >= 2, 300)
            if run_over.is_set() or len(list(markers.iterdir())) < 2:
                return
            record = running_cluster(backend, "node-dies")
            worker = next(n for n in backend.list_nodes(record.cluster_id) if n.role == NodeRole.WORKER)
            assert worker.node_id in {path.read_text() for path in markers.iterdir()}
            target.kill_node(backend, record.cluster_id, worker.node_id)
            killed.append(worker.node_id)
        finally:
            release.write_text("go")

    killer = threading.Thread(target=kill_the_worker_once_both_tasks_run, daemon=True)
    killer.start()
    try:
        dag_run = run_fault_dag(
            target, target.spec("node-dies", workers=1), f"python {job} {markers} {release}"
        )
    finally:
        run_over.set()
        release.write_text("go")
        killer.join(timeout=60)
        backend.close()
    assert killed, "the worker was never killed"
    assert str(dag_run.state) == "success", task_states(dag_run)
    log = task_log(capfd)
    assert "tasks finished on" in log and killed[0] not in log.split("tasks finished on")[-1].splitlines()[0]
    if target.emulator is not None:  # a reclaimed spot worker: the platform starts its node's task again
        assert target.emulator.retries_of_task(killed[0]) == 1
    fault_leaks.assert_none(emulator=target.emulator)


# -- the Airflow task's process is signalled during the build --------------------------------------------


@pytest.mark.parametrize("target", backend_cells("client_sigterm"), indirect=True)
def test_sigterm_during_the_build_the_task_and_callback_clean_up(
    target: Target, fault_leaks, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGTERM reaches the Airflow task process while the build waits for the head (a worker shutting
    down, a user marking the task failed): the build's on_kill shuts the half-built cluster down, the
    task fails, its failure callback and the teardown find nothing left. (SIGTERM while a job runs on a
    local cluster: test_dags.py::test_killed_task_failure_callback_leaves_nothing.)"""
    backend = target.open_backend()
    pid = os.getpid()

    def terminate_once_the_head_is_launched() -> None:
        record = None

        def launched() -> bool:
            nonlocal record
            record = running_cluster(backend, "term-build")
            return record is not None and bool(backend.list_nodes(record.cluster_id))

        if wait_until(launched, 120):
            os.kill(pid, signal.SIGTERM)  # this process runs the task under dag.test()

    signaller = threading.Thread(target=terminate_once_the_head_is_launched, daemon=True)
    signaller.start()
    try:
        dag_run = run_fault_dag(target, target.spec("term-build", head_node_ray_start_script=SLEEP_SCRIPT))
    finally:
        signaller.join(timeout=120)
        backend.close()
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == BUILD_FAILED
    fault_leaks.assert_none(emulator=target.emulator)


def start_dag_process(tmp_path: Path, target: Target, spec: dict[str, Any], **conf: Any) -> subprocess.Popen:
    """The fault DAG under dag.test() in its own process; returns once its head node is launched."""
    backend = target.open_backend()
    run_conf = json.dumps({"spec": spec, **conf})
    process = subprocess.Popen(
        [sys.executable, str(DAG_PROCESS), "raydog_test_faults", target.backend, run_conf],
        stdout=open(tmp_path / "dag.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:

        def launched() -> bool:
            record = running_cluster(backend, spec["cluster_name"])
            return process.poll() is not None or (
                record is not None and bool(backend.list_nodes(record.cluster_id))
            )

        assert wait_until(launched, 180), "the build never launched its head"
        assert process.poll() is None, (tmp_path / "dag.log").read_text()[-3000:]
    except BaseException:
        process.kill()
        process.wait()
        raise
    finally:
        backend.close()
    return process


def latest_dag_run(dag_id: str) -> Any:
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).first()
        session.expunge(run)
        return run


def mark_dag_run_failed(dag_id: str, run_id: str) -> None:
    """What the scheduler does once the killed task's heartbeat times out and no retry is left."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        run = session.query(DagRun).filter(DagRun.dag_id == dag_id, DagRun.run_id == run_id).one()
        run.state = DagRunState.FAILED


@pytest.mark.parametrize("target", backend_cells("client_sigkill"), indirect=True)
def test_sigkill_during_the_build_then_reap_run_finished_cleans_up(
    target: Target, fault_leaks, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL of the Airflow task process during the build: no Python code runs, the half-built
    cluster stays. Once Airflow fails the run (the scheduler, after the task's heartbeat times out),
    `raydog reap --run-finished airflow` finds the cluster by the run's labels and removes it; the
    DAG-level failure callback (as the DAG processor calls it) then has nothing to do."""
    import logging

    caplog.set_level(logging.INFO)
    dag_id = f"raydog_test_faults_{target.backend}"
    process = start_dag_process(
        tmp_path, target, target.spec("kill-build", head_node_ray_start_script=SLEEP_SCRIPT)
    )
    process.kill()
    process.wait(timeout=60)
    assert fault_leaks.count(emulator=target.emulator, wait_s=0).total > 0  # the kill did leave it
    fault_leaks.counts.clear()

    dag_run = latest_dag_run(dag_id)
    running = [
        c
        for c in target.open_backend().list_clusters()
        if c.labels == {**c.labels, **dag_run_labels(dag_id, dag_run.run_id)} and c.state == "running"
    ]
    assert len(running) == 1
    reap = [
        sys.executable,
        "-m",
        "raydog_core.cli",
        "reap",
        "--backend",
        target.backend,
        "--run-finished",
        "airflow",
    ]
    env = {**os.environ}
    if target.emulator is not None:
        env.update(
            YD_API_KEY_ID=target.emulator.key_id,
            YD_API_KEY_SECRET=target.emulator.key_secret,
            YD_API_URL=target.emulator.url,
        )
    before = subprocess.run(reap, env=env, capture_output=True, text=True, timeout=120)
    assert before.returncode == 0 and running[0].cluster_id not in before.stdout, before  # run not over yet

    mark_dag_run_failed(dag_id, dag_run.run_id)
    after = subprocess.run(reap, env=env, capture_output=True, text=True, timeout=120)
    assert after.returncode == 0, after.stderr
    assert f"({running[0].cluster_id}): shut down" in after.stdout, after.stdout

    dag = load_backend_dag("raydog_test_faults", target.backend)
    caplog.clear()
    dag.on_failure_callback = dag.default_args["on_failure_callback"]
    dag.on_failure_callback({"dag": dag, "run_id": dag_run.run_id, "reason": "task_failure"})
    assert "found by its labels" not in caplog.text  # nothing left for it
    fault_leaks.assert_none(emulator=target.emulator)


@pytest.mark.parametrize("target", backend_cells("lease_lapses", ray=True), indirect=True)
def test_sigkill_of_the_task_with_no_recovery_the_lease_lapses_and_the_cluster_ends(
    target: Target, fault_leaks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL of the Airflow task process, and nothing runs after it (no scheduler, no callback, no
    reap): the DAG run held a lease on its cluster, so the watchdog on the head ends the cluster once
    `lease_timeout` has passed (its short job, Ray work, finishing first)."""
    lease_timeout_s, job_s = 5, 10
    monkeypatch.setenv("RAYDOG_YELLOWDOG_IDLE_SHUTDOWN_S", "5")  # emulated idle nodes go after 5 s, not 30
    spec = target.spec("kill-lease", lease_timeout=f"PT{lease_timeout_s}S")
    process = start_dag_process(tmp_path, target, spec, entrypoint=f"sleep {job_s}")
    dag_id = f"raydog_test_faults_{target.backend}"
    backend = target.open_backend()
    try:

        def leased() -> bool:
            state = xcom_value(latest_dag_run(dag_id), "build_cluster", STATE_XCOM_KEY)
            if not state or not state.get("head", {}).get("private_ip"):
                return False
            return bool(RayDogCluster.from_state(state, backend=backend).lease_view()["leases"])

        assert wait_until(lambda: process.poll() is not None or leased(), 180, 1.0), "no lease was taken"
        assert process.poll() is None, (tmp_path / "dag.log").read_text()[-3000:]
        process.kill()
        process.wait(timeout=60)
        assert fault_leaks.count(emulator=target.emulator, wait_s=0).total > 0  # the kill did leave it
        fault_leaks.counts.clear()

        fault_leaks.wait_until_nothing_runs(emulator=target.emulator, timeout_s=lease_timeout_s + job_s + 60)
        list_and_tidy(backend)  # what `raydog list` does: the ended cluster's token goes too
    finally:
        backend.close()
    fault_leaks.assert_none(emulator=target.emulator, wait_s=0)


# -- corrupt or stale state -------------------------------------------------------------------------------


def run_given_state_dag(target: Target, cluster_state: Any) -> Any:
    spec = target.spec("given", head_node_ray_start_script=LISTEN_SCRIPT)
    return load_backend_dag("raydog_test_given_state", target.backend).test(
        run_conf={"spec": spec, "cluster_state": cluster_state}
    )


@pytest.mark.parametrize("target", backend_cells("corrupt_state"), indirect=True)
def test_corrupt_state_fails_the_tasks_clearly_and_the_callback_cleans_up(
    target: Target, fault_leaks, quick_stand_in_head, capfd: pytest.CaptureFixture[str]
) -> None:
    """The job and the teardown get the cluster state through a Jinja `{{ ti.xcom_pull(...) }}`
    string, which Airflow renders as a Python repr, not JSON: both fail with a StateError that says so
    and how to fix it (pass `build.output`). The cluster the build made is not lost: the failure
    callback finds it by the state the build pushed and by the run's labels, and shuts it down."""
    dag_run = run_given_state_dag(target, "jinja-xcom-pull")
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == {"build_cluster": "success", "submit_job": "failed", "shut_down": "failed"}
    log = task_log(capfd)
    assert "StateError" in log and "Python repr" in log and "build.output" in log, log[-3000:]
    fault_leaks.assert_none(emulator=target.emulator)


@pytest.mark.parametrize("target", backend_cells("stale_state"), indirect=True)
def test_stale_state_fails_the_job_clearly_and_the_teardown_says_already_gone(
    target: Target, fault_leaks, quick_stand_in_head, raydog_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The job and the teardown get the state of a cluster that is already gone (an earlier run's XCom,
    a cluster reaped or past its lifetime): the job fails with a StateError saying the state is stale
    (before touching the dead head), the teardown says it was already shut down, and the run's own new
    cluster is removed by the failure callback."""
    gone = RayDogCluster(spec=_stand_in_spec(target, "gone"), backend=target.open_backend())
    gone.build(wait_for_workers=False)  # up (its stand-in head listens), then gone
    gone_state = gone.state.to_dict()
    gone.shut_down()

    dag_run = run_given_state_dag(target, gone_state)
    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == {
        "build_cluster": "success",
        "submit_job": "failed",
        "shut_down": "success",
    }
    assert xcom_value(dag_run, "shut_down") == [gone_state["cluster_id"]]
    log = task_log(capfd)
    assert "StateError" in log and "cluster_state is stale" in log, log[-3000:]
    assert "was already shut down" in log, log[-3000:]
    fault_leaks.assert_none(emulator=target.emulator)


def _stand_in_spec(target: Target, name: str) -> Any:
    from raydog_core.spec import ClusterSpec

    fields = target.spec(name, head_node_ray_start_script=LISTEN_SCRIPT)
    if target.emulator is not None:
        fields.update(backend="yellowdog", cluster_namespace="raydog-faults")
    return ClusterSpec(**fields)
