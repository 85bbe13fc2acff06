"""Flows on real local RayDog clusters against a real Prefect server: results, logs, teardown, retries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import ray
from prefect import flow, get_run_logger, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter
from prefect_helpers import clusters_of_flow_run, flow_run_logs

from raydog_core import demand_watch
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.client_auth import AUTH_VARIABLES
from raydog_core.spec import NodeResources
from raydog_prefect import (
    RayDogClusterConfig,
    RayDogTaskRunner,
    flow_run_cluster,
    remote_options,
    shut_down_flow_run_cluster,
)

pytestmark = pytest.mark.slow

HEAD_ONLY = RayDogClusterConfig(
    cluster_name="head-only", worker_pools=[], head_node_resources=NodeResources(num_cpus=2)
)


@task
def square(x: int) -> int:
    get_run_logger().info("squaring %d on a Ray worker", x)
    return x * x


@task
def on_special_node() -> str:
    return ray.get_runtime_context().get_node_id()


@task
def sleepy(seconds: float) -> None:
    time.sleep(seconds)


def test_fan_out_results_logs_resources_and_teardown(
    backend: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth_before = {key: os.environ.get(key) for key in AUTH_VARIABLES}
    monkeypatch.setattr(demand_watch, "INTERVAL_S", 1.0)  # 10 s in production: two looks, then the log
    config = RayDogClusterConfig(
        cluster_name="fan-out",
        worker_pools=[{"worker_pool_node_count": 1, "worker_node_resources": {"resources": {"special": 1}}}],
    )

    def explained() -> bool:
        """Whether the flow run's log has the demand watch's explanation yet (imports inside: the flow,
        with what it references, is shipped to Ray's workers, where this test module is not)."""
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import LogFilter
        from prefect.context import FlowRunContext

        context = FlowRunContext.get()
        assert context is not None and context.flow_run is not None
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id={"any_": [context.flow_run.id]}))
        return any("which no node" in entry.message for entry in logs)

    @flow(task_runner=RayDogTaskRunner(cluster=config))
    def fan_out(n: int) -> tuple[int, str]:
        total = sum(square.map(range(n)).result())
        with remote_options(resources={"special": 1}):
            node = on_special_node.submit().result()
        # Why isn't it scaling? Ray work no node offers resources for waits: the run's log says why.
        stuck = ray.remote(lambda: None).options(resources={"special": 2}).remote()
        deadline = time.monotonic() + 60
        while not explained() and time.monotonic() < deadline:
            time.sleep(2)
        ray.cancel(stuck, force=True)
        return total, node

    state = fan_out(6, return_state=True)
    total, node = state.result()
    flow_run_id = state.state_details.flow_run_id

    assert total == sum(x * x for x in range(6))
    assert node  # ran where the custom resource is: the only node that has it
    messages = flow_run_logs(flow_run_id)
    assert sum("squaring" in m and "on a Ray worker" in m for m in messages) == 6, messages
    assert sum("Finished in state Completed()" in m for m in messages) >= 7
    assert any("Connected to RayDog cluster fan-out" in m and "dashboard http://" in m for m in messages)
    assert any("wait for CPU 1, special 2, which no node" in m for m in messages), messages
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
    assert sorted(t.state_name for t in task_runs) == ["Completed"] * 7
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
    (link,) = [a for a in artifacts if a.type == "markdown" and "Ray dashboard of fan-out" in str(a.data)]
    assert "http://" in str(link.data), link.data
    (post_mortem,) = [a for a in artifacts if a.key == "raydog-post-mortem"]
    assert "shut down by its builder" in str(post_mortem.data) and "raydog logs" in str(post_mortem.data)
    assert str(post_mortem.data).count("| worker | terminated |") == 1, post_mortem.data

    (record,) = clusters_of_flow_run(backend, flow_run_id)
    assert record.labels["orchestrator"] == "prefect" and record.state == "stopped"
    assert backend.live_resources() == []

    # The crash hook after a normal teardown: nothing to do, and it says so.
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    assert shut_down_flow_run_cluster(fan_out, flow_run, flow_run.state) == []

    # The process is as before the flow: no Ray auth setting of the torn-down cluster is left, so a
    # plain local Ray starts (its GCS would never come up with the deleted token's path).
    assert {key: os.environ.get(key) for key in AUTH_VARIABLES} == auth_before
    monkeypatch.setenv("HOME", str(tmp_path))  # Ray's default token file goes there, not to ~/.ray
    ray.init(num_cpus=1, include_dashboard=False)
    try:
        assert ray.get(ray.remote(lambda: "local").remote()) == "local"
    finally:
        ray.shutdown()


def test_a_raising_flow_fails_and_its_cluster_goes(backend: LocalBackend) -> None:
    @flow(task_runner=RayDogTaskRunner(cluster=HEAD_ONLY), on_failure=[shut_down_flow_run_cluster])
    def raising() -> None:
        square.submit(3).result()
        raise RuntimeError("the flow's own error")

    state = raising(return_state=True)
    assert state.is_failed()
    with pytest.raises(RuntimeError, match="the flow's own error"):
        state.result()
    flow_run_id = state.state_details.flow_run_id
    assert [c.state for c in clusters_of_flow_run(backend, flow_run_id)] == ["stopped"]
    assert backend.live_resources() == []
    # on_failure ran first (inside the attempt); the runner's own teardown then had nothing left to do.
    messages = flow_run_logs(flow_run_id)
    assert any("RayDog: shut down cluster head-only" in m for m in messages), messages
    assert any("was already shut down" in m and "nothing left to do" in m for m in messages), messages


def test_a_timed_out_flow_loses_its_cluster(backend: LocalBackend) -> None:
    """The cluster is built inside the run (on its first submission), so the flow's timeout covers the
    build too: here it strikes mid-build, and the half-built cluster goes."""

    @flow(task_runner=RayDogTaskRunner(cluster=HEAD_ONLY), timeout_seconds=3)
    def too_slow() -> None:
        sleepy.submit(120)  # had the build finished in time: still running at teardown, not waited for
        time.sleep(6)  # Prefect raises the timeout for a sync flow once the body yields

    state = too_slow(return_state=True)
    assert state.name == "TimedOut"
    assert [c.state for c in clusters_of_flow_run(backend, state.state_details.flow_run_id)] == ["stopped"]
    assert backend.live_resources() == []


def test_retries_reuse_one_cluster_torn_down_once(backend: LocalBackend) -> None:
    attempts: list[str] = []

    @flow(task_runner=RayDogTaskRunner(cluster=HEAD_ONLY), retries=2, retry_delay_seconds=0)
    def flaky() -> int:
        flow_run_cluster()  # Ray for the flow's own code, before any task
        attempts.append(ray.get_runtime_context().gcs_address)
        if len(attempts) < 3:
            raise RuntimeError(f"attempt {len(attempts)} fails")
        return square.submit(7).result()

    state = flaky(return_state=True)
    assert state.result() == 49
    assert len(attempts) == 3 and len(set(attempts)) == 1  # three attempts, one cluster
    flow_run_id = state.state_details.flow_run_id
    assert [c.state for c in clusters_of_flow_run(backend, flow_run_id)] == ["stopped"]
    messages = flow_run_logs(flow_run_id)
    assert sum("Building RayDog cluster" in m for m in messages) == 1
    assert sum("Reusing RayDog cluster" in m for m in messages) == 2
    assert sum("Shutting down RayDog cluster" in m for m in messages) == 1
    assert backend.live_resources() == []


def test_a_flow_without_tasks_builds_nothing(backend: LocalBackend) -> None:
    before = len(backend.list_clusters())

    @flow(task_runner=RayDogTaskRunner(cluster=HEAD_ONLY))
    def no_tasks() -> str:
        return "done"

    assert no_tasks() == "done"
    assert len(backend.list_clusters()) == before


def test_the_block_is_a_resource_torn_down_even_when_the_block_raises(backend: LocalBackend) -> None:
    with pytest.raises(ValueError, match="raised inside"), HEAD_ONLY as cluster:
        ray.init(address=cluster.ray_address)
        try:
            assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
        finally:
            ray.shutdown()
        assert backend.live_resources()
        raise ValueError("raised inside the with-block")
    assert backend.live_resources() == []
