"""The builder on the local backend with real Ray: build, use, grow, shrink, GPUs, save, shut down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray

from raydog_core import RayDogCluster, RayDogClusterProxy
from raydog_core.backends.base import NodeStatus
from raydog_core.client_auth import AUTH_VARIABLES
from raydog_core.scripts import default_script

pytestmark = pytest.mark.slow


@ray.remote(num_cpus=1)
def where_am_i() -> dict:
    context = ray.get_runtime_context()
    return {"node": context.get_node_id(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "")}


def alive_nodes() -> list[dict]:
    return [node for node in ray.nodes() if node["Alive"]]


def wait_for(predicate, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


@pytest.fixture(scope="module")
def cluster(raydog_home) -> Iterator[RayDogCluster]:
    """Head + 2 workers, shared by this module's tests, with four pretend GPUs handed out one per node."""
    cluster = RayDogCluster(cluster_name="shared", gpu_ids=[0, 1, 2, 3])
    cluster.add_worker_pool(worker_pool_node_count=2, worker_pool_internal_name="cpu")
    cluster.build()
    ray.init(address=cluster.ray_address)
    yield cluster
    ray.shutdown()
    cluster.shut_down()


def test_three_nodes_alive_and_a_task_runs_on_each(cluster: RayDogCluster) -> None:
    nodes = alive_nodes()
    assert len(nodes) == 3
    node_ids = {n["NodeID"] for n in nodes}
    placed = ray.get(
        [
            where_am_i.options(
                scheduling_strategy=ray.util.scheduling_strategies.NodeAffinitySchedulingStrategy(
                    node, soft=False
                )
            ).remote()
            for node in node_ids
        ]
    )
    assert {p["node"] for p in placed} == node_ids


def test_each_node_gets_its_own_gpu(cluster: RayDogCluster) -> None:
    nodes = alive_nodes()
    assert sorted(n["Resources"].get("GPU", 0) for n in nodes) == [1, 1, 1]
    assert sum(n["Resources"]["CPU"] for n in nodes) == 3
    # Ray sets CUDA_VISIBLE_DEVICES for GPU tasks from the node's own list: head 0, workers 1 and 2.
    seen = ray.get([where_am_i.options(num_gpus=1).remote() for _ in range(6)])
    assert {s["cuda"] for s in seen} <= {"0", "1", "2"}
    infos = {n.node_id: n for n in cluster.nodes()}
    assert len(infos) == 3 and all(n.status == NodeStatus.RUNNING for n in infos.values())


def test_added_pool_joins_and_removed_pool_leaves_while_work_continues(cluster: RayDogCluster) -> None:
    pool_id = cluster.add_worker_pool(worker_pool_node_count=1, worker_pool_internal_name="extra")
    assert pool_id == "shared-w2"
    assert wait_for(lambda: len(alive_nodes()) == 4)
    with pytest.raises(Exception, match="GPU"):  # all four pretend GPUs are taken now
        cluster.add_worker_pool(worker_pool_node_count=1, worker_node_resources={"num_gpus": 1})
    cluster.remove_worker_pool_by_internal_name("extra")
    assert wait_for(lambda: len(alive_nodes()) == 3)
    assert len(ray.get([where_am_i.remote() for _ in range(6)])) == 6  # the cluster keeps working
    assert cluster.worker_pool_internal_names == ["cpu"]


def test_a_worker_whose_start_fails_once_is_replaced(cluster: RayDogCluster, tmp_path: Path) -> None:
    """Ray's own start can fail on a loaded machine (its raylet gets 30 s, fixed): the builder starts
    one replacement, as Ray's autoscaler would, instead of failing the run."""
    marker = tmp_path / "failed-once"
    fails_once = default_script("worker").replace(
        "\n", f'\nif [ ! -e "{marker}" ]; then touch "{marker}"; echo "start timed out" >&2; exit 1; fi\n', 1
    )
    pool_id = cluster.add_worker_pool(worker_pool_node_count=1, worker_node_task_script=fails_once)
    assert cluster.wait_for_nodes(timeout=120) == 4
    (failed,) = [n for n in cluster.nodes() if n.pool_id == pool_id and n.status != NodeStatus.RUNNING]
    assert marker.exists() and "start timed out" in failed.detail
    (pool,) = [p for p in json.loads(cluster.save_state_to_json())["pools"] if p["pool_id"] == pool_id]
    assert failed.node_id not in pool["node_ids"] and len(pool["node_ids"]) == 1
    cluster.remove_worker_pool(pool_id)
    assert wait_for(lambda: len(alive_nodes()) == 3)


def test_work_no_node_can_run_is_explained_in_the_log(cluster: RayDogCluster) -> None:
    """Why isn't it scaling? A task asking for a resource no node offers waits for ever; the demand
    watch says so, naming what it waits for, what the nodes offer, and the fix. Work that only waits
    for busy nodes is not reported."""
    messages: list[str] = []

    class Collect:
        def warning(self, msg: str, *args: object) -> None:
            messages.append(msg % args)

        error = debug = warning

    watch = cluster.watch_demand(Collect())  # type: ignore[arg-type]
    watch.stop()  # looked at by hand below, so the test does not wait on the thread's clock
    waiting = where_am_i.options(resources={"gpu_pool_x": 1}).remote()
    busy = [where_am_i.options(num_cpus=3).remote()]  # fits no node either: each has 1 CPU
    fits = [where_am_i.remote() for _ in range(6)]  # more than fits at once: busy, not unmet
    deadline = time.monotonic() + 60
    while len(messages) < 2 and time.monotonic() < deadline:
        watch.check()
        time.sleep(2)
    assert len(messages) == 2, messages
    assert any("gpu_pool_x 1, which no node" in m and "add a worker pool" in m for m in messages), messages
    assert any("wait for CPU 3" in m and "CPU 1" in m for m in messages), messages
    assert len(ray.get(fits)) == 6
    ray.cancel(waiting, force=True)
    ray.cancel(busy[0], force=True)
    watch.check()
    assert len(messages) == 2  # each demand is explained once


def test_state_has_addresses_and_no_secret(cluster: RayDogCluster, raydog_home) -> None:
    state = json.loads(cluster.save_state_to_json())
    assert state["phase"] == "running"
    assert state["head"]["gcs_port"] == int(cluster.ray_address.rsplit(":", 1)[1])
    assert state["log_dir"] and Path(state["log_dir"]).is_dir()
    token = (raydog_home / "tokens" / cluster.cluster_id).read_text()
    assert token and token not in cluster.save_state_to_json()
    assert oct((raydog_home / "tokens" / cluster.cluster_id).stat().st_mode & 0o777) == "0o600"


def test_zz_shut_down_from_another_process_leaves_nothing(
    cluster: RayDogCluster, tmp_path, local_backend
) -> None:
    state_file = tmp_path / "state.json"
    cluster.save_state_to_json_file(state_file)
    ray.shutdown()
    code = (
        "import sys; from raydog_core import RayDogClusterProxy as P; "
        "p = P(); p.load_saved_state_from_json_file(sys.argv[1]); p.shut_down(); p.shut_down()"
    )
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", code, str(state_file)], check=True, env=dict(os.environ))
    assert time.monotonic() - started < 30
    assert local_backend.live_resources() == []
    assert all(n.status.is_final for n in cluster.nodes())
    proxy = RayDogClusterProxy()
    proxy.load_saved_state_from_json_file(state_file)
    proxy.shut_down()  # a second shut-down of a gone cluster is not an error


def test_two_clusters_side_by_side_without_gpus(local_backend) -> None:
    before = {key: os.environ.get(key) for key in AUTH_VARIABLES}
    with RayDogCluster(cluster_name="left") as left, RayDogCluster(cluster_name="right") as right:
        left.build(wait_for_workers=False)
        right.build(wait_for_workers=False)
        assert os.environ["RAY_AUTH_TOKEN_PATH"].endswith(right.cluster_id)  # the newest build wins
        assert left.ray_address != right.ray_address
        assert left.dashboard_url != right.dashboard_url
        assert left.wait_for_nodes(1, timeout=60) == 1
        assert right.wait_for_nodes(1, timeout=60) == 1
    assert local_backend.live_resources() == []
    # The process's Ray client is exactly as before: no path to a deleted token stays behind.
    assert {key: os.environ.get(key) for key in AUTH_VARIABLES} == before


def test_a_head_whose_start_fails_once_is_replaced(local_backend, fault_leaks, tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"
    fails_once = default_script("head").replace(
        "\n", f'\nif [ ! -e "{marker}" ]; then touch "{marker}"; echo "start timed out" >&2; exit 1; fi\n', 1
    )
    with RayDogCluster(cluster_name="headonce", head_node_ray_start_script=fails_once) as cluster:
        cluster.build()
        nodes = {n.node_id: n for n in cluster.nodes()}
        (failed,) = [n for n in nodes.values() if n.status == NodeStatus.FAILED]
        assert "start timed out" in failed.detail
        assert nodes[cluster.state.head.node_id].status == NodeStatus.RUNNING
        assert cluster.wait_for_nodes(timeout=30) == 1
    fault_leaks.assert_none()


@pytest.mark.fault_case("builder", "local", "head_script_fails")
def test_failing_head_script_is_reported_with_its_log(local_backend, fault_leaks) -> None:
    cluster = RayDogCluster(
        cluster_name="badhead", head_node_ray_start_script="#!/bin/bash\necho broken-head >&2\nexit 3\n"
    )
    with pytest.raises(Exception) as caught:
        cluster.build(30)
    assert (
        "head node" in str(caught.value)
        and "code 3" in str(caught.value)
        and "broken-head" in str(caught.value)
    )
    fault_leaks.assert_none()
    assert local_backend.live_resources() == []


@pytest.mark.fault_case("builder", "local", "worker_script_fails")
def test_failing_worker_script_is_reported_and_cleaned_up(local_backend, fault_leaks) -> None:
    cluster = RayDogCluster(cluster_name="badworker")
    cluster.add_worker_pool(
        worker_pool_node_count=1, worker_node_task_script="#!/bin/bash\necho no-ray-here\nexit 7\n"
    )
    with pytest.raises(Exception) as caught:
        cluster.build(90)
    assert "worker node" in str(caught.value) and "no-ray-here" in str(caught.value)
    fault_leaks.assert_none()
    assert local_backend.live_resources() == []


@pytest.mark.fault_case("builder", "local", "build_timeout")
def test_build_timeout_cleans_up(local_backend, fault_leaks) -> None:
    cluster = RayDogCluster(cluster_name="slow", head_node_ray_start_script="#!/bin/bash\nsleep 600\n")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="not up in time"):
        cluster.build(2)
    assert time.monotonic() - started < 15
    fault_leaks.assert_none()
    assert local_backend.live_resources() == []


def test_ctrl_c_during_build_cleans_up(local_backend) -> None:
    import signal
    import threading

    cluster = RayDogCluster(cluster_name="interrupted", head_node_ray_start_script="#!/bin/bash\nsleep 600\n")
    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        cluster.build(60)
    timer.join()
    assert local_backend.live_resources() == []
