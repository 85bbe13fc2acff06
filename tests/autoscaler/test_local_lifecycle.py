"""`ray up` / `ray status` / `ray submit` / autoscaling / `ray down` with the real `ray` CLI, real Ray,
real Redis and RayDogNodeProvider on the local backend. One cluster for the module (Ray starts are slow
on a shared 2-core machine); the tests run in order and each checks one stage of its life."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from autoscaler_cli import cluster_name, ray_cli, write_config

from raydog_core.autoscaler.provider import AUTOSCALER_LABEL, TAG_STORE_PORT_LABEL
from raydog_core.backends.base import NodeInfo, NodeRole, NodeStatus
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.ports import is_listening
from raydog_core.processes import ProcessRef, stop_sessions, wait_until
from raydog_core.tagstore import TagStore

pytestmark = pytest.mark.slow

MAX_WORKERS = 2


@dataclass
class Cluster:
    name: str
    config: Path
    home: Path
    backend: LocalBackend
    cluster_id: str = ""
    tag_store_port: int = 0

    def nodes(self, role: NodeRole | None = None) -> list[NodeInfo]:
        return [
            n
            for n in self.backend.list_nodes(self.cluster_id)
            if n.status == NodeStatus.RUNNING and (role is None or n.role == role)
        ]

    def workers(self) -> list[NodeInfo]:
        return self.nodes(NodeRole.WORKER)

    def tag_store(self) -> TagStore:
        return TagStore.on_head(
            self.name, self.tag_store_port, self.home / "autoscaler" / self.cluster_id / "tag-store.password"
        )

    def exec(self, command: str) -> str:
        return ray_cli("exec", str(self.config), command).stdout


@pytest.fixture(scope="module")
def cluster(raydog_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = cluster_name("as")
    config = write_config(
        tmp_path_factory.mktemp("autoscaler"),
        name,
        idle_timeout_minutes=0.25,
        max_workers=MAX_WORKERS,
        **{
            "provider.autoscaler_update_interval_s": 1,
            "provider.files_to_upload": ["scale_up.py"],
            "available_node_types.ray_worker_small.min_workers": 1,
            "available_node_types.ray_worker_small.max_workers": MAX_WORKERS,
        },
    )
    state = Cluster(name, config, raydog_home, LocalBackend(raydog_home / "local"))
    try:
        ray_cli("up", "-y", "--no-config-cache", str(config))
        (record,) = [r for r in state.backend.list_clusters() if r.name == name and r.state == "running"]
        assert record.labels[AUTOSCALER_LABEL] == "true"
        state.cluster_id = record.cluster_id
        state.tag_store_port = int(record.labels[TAG_STORE_PORT_LABEL])
        yield state
    finally:
        ray_cli("down", "-y", str(config), check=False)
        for record in state.backend.list_clusters():
            if record.name == name and record.state == "running":
                state.backend.shut_down(record.cluster_id)


def test_up_starts_the_head_with_tag_store_and_uploaded_files(cluster: Cluster) -> None:
    (head,) = cluster.nodes(NodeRole.HEAD)
    store = cluster.tag_store()
    try:
        tags, _ = store.read_all([head.node_id])
        assert tags[head.node_id]["ray-node-type"] == "head"
        assert tags[head.node_id]["ray-node-status"] == "up-to-date"
        assert store.get_meta()["gcs_port"]
    finally:
        store.close()
    assert (cluster.home / "autoscaler" / cluster.cluster_id / "head" / "scale_up.py").is_file()


def test_a_second_ray_up_reuses_the_running_cluster(cluster: Cluster) -> None:
    (head,) = cluster.nodes(NodeRole.HEAD)
    ray_cli("up", "-y", "--no-config-cache", str(cluster.config))
    running = [
        r.cluster_id
        for r in cluster.backend.list_clusters()
        if r.name == cluster.name and r.state == "running"
    ]
    assert running == [cluster.cluster_id]
    assert [n.node_id for n in cluster.nodes(NodeRole.HEAD)] == [head.node_id]


def test_min_workers_are_kept_and_status_shows_them(cluster: Cluster) -> None:
    assert wait_until(lambda: len(cluster.workers()) >= 1, 120, 1.0), "min_workers=1 never started"
    assert wait_until(lambda: "1 ray_worker_small" in cluster.exec("ray status"), 120, 2.0)
    status = cluster.exec("ray status")
    assert "ray_head_default" in status and "Pending Demands" in status


def test_submitted_work_beyond_the_head_scales_up_to_max_workers(cluster: Cluster) -> None:
    result = ray_cli("submit", str(cluster.config), str(cluster.config.parent / "scale_up.py"))
    assert "4 tasks ran on" in result.stdout
    assert 1 <= len(cluster.workers()) <= MAX_WORKERS
    assert wait_until(lambda: len(cluster.workers()) == MAX_WORKERS, 60, 1.0) or len(cluster.workers()) >= 1


def test_idle_workers_are_removed_down_to_min_workers_and_their_tags_go(cluster: Cluster) -> None:
    assert wait_until(lambda: len(cluster.workers()) == 1, 180, 2.0), "idle workers were not removed"
    live = {n.node_id for n in cluster.nodes()}
    store = cluster.tag_store()
    try:
        assert wait_until(lambda: store.read_all(live)[1] == live, 30, 1.0), "tags of removed nodes remain"
    finally:
        store.close()


def test_a_worker_that_dies_is_noticed_and_replaced(cluster: Cluster) -> None:
    (worker,) = cluster.workers()
    manifest = cluster.backend._read(cluster.backend.root / cluster.cluster_id)
    stop_sessions([ProcessRef.from_dict(manifest["nodes"][worker.node_id]["process"])])  # it "crashes"
    assert wait_until(lambda: any(n.node_id != worker.node_id for n in cluster.workers()), 120, 1.0), (
        "the dead worker was not replaced (min_workers=1)"
    )


def test_request_resources_scales_up(cluster: Cluster, tmp_path: Path) -> None:
    script = tmp_path / "request.py"
    script.write_text(
        "import ray, time\n"
        "from ray.autoscaler.sdk import request_resources\n"
        "ray.init()\n"
        "request_resources(num_cpus=4)\n"
        "deadline = time.time() + 120\n"
        "while ray.cluster_resources().get('CPU', 0) < 5 and time.time() < deadline:\n"
        "    time.sleep(1)\n"
        "print('CPUS', ray.cluster_resources().get('CPU', 0))\n"
        "request_resources(num_cpus=0)\n"
    )
    result = ray_cli("submit", str(cluster.config), str(script))
    assert "CPUS 5.0" in result.stdout, result.stdout[-2000:]
    assert len(cluster.workers()) == 2


def test_down_leaves_nothing_behind(cluster: Cluster) -> None:
    ray_cli("down", "-y", str(cluster.config))
    assert cluster.backend.live_resources() == []
    assert not any(r.state == "running" for r in cluster.backend.list_clusters() if r.name == cluster.name)
    assert not is_listening("127.0.0.1", cluster.tag_store_port), "the tag store is still up"
    assert not (cluster.home / "autoscaler" / cluster.cluster_id).exists()
    assert not (cluster.home / "tokens" / cluster.cluster_id).exists()
