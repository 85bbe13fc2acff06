"""The builder on the YellowDog backend against the emulator, with real Ray on every node."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import ray
from conftest import TEMPLATE

from raydog_core import RayDogCluster, postmortem
from raydog_core.backends.base import NodeRole, NodeStatus
from raydog_core.errors import RayDogError
from raydog_core.testing.emulator import Emulator

pytestmark = pytest.mark.slow


@ray.remote(num_cpus=1)
def where_am_i() -> dict[str, str]:
    return {"node": ray.get_runtime_context().get_node_id(), "yd_task": os.environ.get("YD_TASK_ID", "")}


def alive_nodes() -> list[dict[str, Any]]:
    return [node for node in ray.nodes() if node["Alive"]]


def wait_for(predicate: Any, timeout: float = 90.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return predicate()


@pytest.fixture(scope="module")
def cluster(yellowdog_emulator: Emulator, raydog_home: Any) -> Iterator[RayDogCluster]:
    """Head + 2 workers built through the emulator by the real SDK, shared by this module's tests."""
    cluster = RayDogCluster(
        cluster_name="yd-e2e",
        backend="yellowdog",
        **yellowdog_emulator.cluster_kwargs(),
        cluster_namespace="raydog-test",
        cluster_labels={"flow-run": "run-42"},
        cluster_lifetime=3600,
        head_node_compute_requirement_template_id=TEMPLATE,
        head_node_instance_tags={"team": "data"},
    )
    cluster.add_worker_pool(
        worker_pool_node_count=2,
        worker_pool_internal_name="cpu",
        worker_node_compute_requirement_template_id=TEMPLATE,
    )
    try:
        cluster.build()
        ray.init(address=cluster.ray_address)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shut_down()


def test_ray_work_runs_on_every_node(cluster: RayDogCluster) -> None:
    node_ids = {n["NodeID"] for n in alive_nodes()}
    assert len(node_ids) == 3
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
    assert all(p["yd_task"].startswith("ydid:task:") for p in placed)  # each node is a YellowDog task


def test_nodes_and_labels_come_from_the_platform(
    cluster: RayDogCluster, yellowdog_emulator: Emulator
) -> None:
    nodes = cluster.nodes()
    assert sorted(n.role for n in nodes) == [NodeRole.HEAD, NodeRole.WORKER, NodeRole.WORKER]
    assert all(n.status == NodeStatus.RUNNING and n.private_ip == "127.0.0.1" for n in nodes)
    assert all(n.pool_id.startswith("ydid:wrkrpool:") for n in nodes)
    records = [r for r in cluster._ensure_backend().list_clusters() if r.cluster_id == cluster.cluster_id]
    assert records and records[0].labels == {"flow-run": "run-42"} and records[0].live_nodes == 3
    with yellowdog_emulator.platform.lock:
        computes = [c for c in yellowdog_emulator.platform.computes.values() if c.alive]
        assert all(c.instance_tags["raydog-label-flow-run"] == "run-42" for c in computes)
        head = next(c for c in computes if c.name == "yd-e2e-head")
        assert head.instance_tags["team"] == "data"
        tasks = [t for t in yellowdog_emulator.platform.tasks.values() if t.status == "EXECUTING"]
        # What is left of cluster_lifetime (1 h, counted from the cluster's creation) when the group was made.
        lifetime = timedelta(hours=1)
        assert all(lifetime - timedelta(minutes=5) <= t.group.task_timeout <= lifetime for t in tasks)
        secret = yellowdog_emulator.key_secret
        assert all(secret not in json.dumps(t.spec) for t in tasks)  # the key never reaches a node


def test_pool_added_joins_and_removed_pool_leaves(
    cluster: RayDogCluster, yellowdog_emulator: Emulator
) -> None:
    pool_id = cluster.add_worker_pool(
        worker_pool_node_count=1,
        worker_pool_internal_name="extra",
        worker_node_compute_requirement_template_id=TEMPLATE,
    )
    assert wait_for(lambda: len(alive_nodes()) == 4)
    cluster.remove_worker_pool(pool_id)
    assert wait_for(lambda: len(alive_nodes()) == 3)
    assert len(ray.get([where_am_i.remote() for _ in range(6)])) == 6  # the cluster keeps working
    assert not any("yd-e2e-w2" in leak for leak in yellowdog_emulator.wait_until_clean(0.5) if "pool" in leak)


@ray.remote(num_cpus=1, max_retries=3)
def slow_square(x: int) -> int:
    time.sleep(2)
    return x * x


def test_a_worker_whose_machine_is_reclaimed_runs_again_and_the_work_finishes(
    cluster: RayDogCluster, yellowdog_emulator: Emulator
) -> None:
    """A spot worker reclaimed mid-run: Ray retries its tasks on the other nodes, the platform starts the
    node's task again (RayDog's retry policy for ALLOCATION_LOST) on a node its pool gets back (RayDog
    resizes a pool short of nodes), and the cluster has all its nodes again."""
    victim = next(n for n in cluster.nodes() if n.role == NodeRole.WORKER)
    squares = [slow_square.remote(i) for i in range(12)]
    time.sleep(1)
    yellowdog_emulator.kill_instance_of_task(victim.node_id)
    assert sorted(ray.get(squares, timeout=300)) == [i * i for i in range(12)]
    assert wait_for(lambda: len(alive_nodes()) == 3, 180), (
        cluster.nodes(),
        yellowdog_emulator.live_resources(),
    )
    again = next(n for n in cluster.nodes() if n.node_id == victim.node_id)
    assert again.status == NodeStatus.RUNNING and "started again (1x)" in again.detail


def test_zz_shut_down_from_another_process_leaves_nothing(
    cluster: RayDogCluster, yellowdog_emulator: Emulator, tmp_path: Any
) -> None:
    state_file = tmp_path / "state.json"
    cluster.save_state_to_json_file(state_file)
    assert yellowdog_emulator.key_secret not in state_file.read_text()
    ray.shutdown()
    code = (
        "import sys; from raydog_core import RayDogClusterProxy as P; "
        "p = P(); p.load_saved_state_from_json_file(sys.argv[1]); p.shut_down()"
    )
    env = {**os.environ, **yellowdog_emulator.environment()}  # the platform is the caller's choice
    result = subprocess.run(
        [sys.executable, "-c", code, str(state_file)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert yellowdog_emulator.key_secret not in result.stderr + result.stdout
    assert yellowdog_emulator.wait_until_clean() == []
    # The nodes' own output outlives their instances: the platform uploaded each task's output and Ray
    # log tails when it ended, and the post-mortem read them back from the store.
    bundle = postmortem.find(cluster.state.cluster_id)
    assert bundle is not None
    with tarfile.open(bundle.path) as archive:
        names = [m.name for m in archive if m.isfile()]
        head_log = next(m for m in archive if re.fullmatch(r"logs/head-[^/]+\.log", m.name))
        assert "Ray runtime started" in archive.extractfile(head_log).read().decode()  # type: ignore[union-attr]
    with_ray_logs = {name.split("/")[1] for name in names if name.endswith("/ray/raylet.out")}
    assert len(with_ray_logs) >= 3, names  # the head and both workers at least


def test_warm_reuse_on_the_platform_one_cluster_per_key_and_spec(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator, raydog_home: Any, tmp_path: Any, monkeypatch: Any
) -> None:
    """Two runs on this machine share the warm cluster. A run on "another machine" (another RAYDOG_HOME:
    no shared lock, no saved state, no token file) finds it through the platform: without the builder's
    token it is refused, clearly, and the cluster is left alone; given the token ($RAYDOG_RAY_AUTH_TOKEN,
    as the builder had) it attaches. Never a second cluster for one key and spec."""
    warm = {**yd_kwargs, "cluster_name": "yd-warm", "reuse_key": "nightly", "idle_ttl": timedelta(minutes=5)}
    token = "shared-warm-token-" + "0" * 32  # a token kept in a secrets manager, given to every machine
    monkeypatch.setenv("RAYDOG_RAY_AUTH_TOKEN", token)
    with RayDogCluster(**warm) as first:
        first.build()
        warm_id = first.cluster_id
    with RayDogCluster(**warm) as second:
        second.build()
        assert second.attached and second.cluster_id == warm_id
        assert [lease["holder"][:8] for lease in second.lease_view()["leases"]] == ["builder:"]

    monkeypatch.setenv("RAYDOG_HOME", str(tmp_path / "another-machine"))
    monkeypatch.delenv("RAYDOG_RAY_AUTH_TOKEN")
    with pytest.raises(RayDogError, match="no token for it: set RAYDOG_RAY_AUTH_TOKEN"):
        RayDogCluster(**warm).build()
    monkeypatch.setenv("RAYDOG_RAY_AUTH_TOKEN", "not-the-builder-s")
    with pytest.raises(RayDogError, match=r"could not attach .*401.*the cluster is left as it is"):
        RayDogCluster(**warm).build()
    assert yellowdog_emulator.live_cluster_ids() == [warm_id]  # neither refusal touched it
    monkeypatch.setenv("RAYDOG_RAY_AUTH_TOKEN", token)
    with RayDogCluster(**warm) as elsewhere:
        elsewhere.build()
        assert elsewhere.attached and elsewhere.cluster_id == warm_id
        holders = [lease["holder"] for lease in elsewhere.lease_view()["leases"]]
        assert len(holders) == 1 and holders[0].startswith("builder:")
        ray.init(address=elsewhere.ray_address)  # Ray itself takes this machine's token too
        try:
            assert ray.get(where_am_i.options(num_cpus=0).remote())["yd_task"]
        finally:
            ray.shutdown()
    assert yellowdog_emulator.live_cluster_ids() == [warm_id]  # it left; the cluster stays warm
    monkeypatch.setenv("RAYDOG_HOME", str(raydog_home))

    used = RayDogCluster.from_state(first.state, **yellowdog_emulator.cluster_kwargs()).shut_down()
    assert used is not None and used.node_hours > 0  # what the warm cluster used over every run
    assert yellowdog_emulator.wait_until_clean() == []
