"""`ray up` / `ray status` / `ray submit` / autoscaling / `ray down` with the real `ray` CLI, real Ray,
real Redis and RayDogNodeProvider on the local backend. One cluster for the module (Ray starts are slow
on a shared 2-core machine); the tests run in order and each checks one stage of its life."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from autoscaler_cli import cluster_name, ray_cli, write_config

from raydog_core import postmortem
from raydog_core.autoscaler.provider import AUTOSCALER_LABEL, TAG_STORE_PORT_LABEL
from raydog_core.backends.base import NodeInfo, NodeRole, NodeStatus
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.ports import is_listening
from raydog_core.processes import stop_sessions, wait_until
from raydog_core.scripts import default_script
from raydog_core.tagstore import TagStore

pytestmark = pytest.mark.slow

MAX_WORKERS = 2
# Fault-matrix cells proved on this module's cluster; the final `ray down` test counts the leaks of all.
NODE_DIES = pytest.mark.fault_case("ray_up", "local", "node_dies_mid_run")
WORKER_FAILS = pytest.mark.fault_case("ray_up", "local", "worker_script_fails")
CORRUPT_STATE = pytest.mark.fault_case("ray_up", "local", "corrupt_state")
BROKEN_MESSAGE = "worker: broken on purpose"


def worker_script(marker: Path) -> str:
    """RayDog's default worker script, except that it fails at once while `marker` exists."""
    check = f'if [ -e "{marker}" ]; then echo "{BROKEN_MESSAGE}" >&2; exit 5; fi\n'
    return default_script("worker").replace("\n", "\n" + check, 1)


@dataclass
class Cluster:
    name: str
    config: Path
    home: Path
    backend: LocalBackend
    broken_marker: Path  # while it exists, new workers' scripts fail
    cluster_id: str = ""
    tag_store_port: int = 0
    tag_store_password: str = ""  # read at start: a test corrupts the client's copy
    tag_store_meta: dict[str, str] | None = None  # read at start: a test deletes it

    def nodes(self, role: NodeRole | None = None) -> list[NodeInfo]:
        return [
            n
            for n in self.backend.list_nodes(self.cluster_id)
            if n.status == NodeStatus.RUNNING and (role is None or n.role == role)
        ]

    def workers(self) -> list[NodeInfo]:
        return self.nodes(NodeRole.WORKER)

    def tag_store(self) -> TagStore:
        return TagStore(self.name, self.tag_store_port, self.tag_store_password)

    def password_file(self) -> Path:
        return self.home / "autoscaler" / self.cluster_id / "tag-store.password"

    def exec(self, command: str) -> str:
        return ray_cli("exec", str(self.config), command).stdout


@pytest.fixture(scope="module")
def cluster(raydog_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = cluster_name("as")
    directory = tmp_path_factory.mktemp("autoscaler")
    marker = directory / "workers-broken"
    config = write_config(
        directory,
        name,
        idle_timeout_minutes=0.25,
        max_workers=MAX_WORKERS,
        **{
            "provider.autoscaler_update_interval_s": 1,
            "provider.files_to_upload": ["scale_up.py"],
            "provider.ray_worker_node_task_script": worker_script(marker),
            "available_node_types.ray_worker_small.min_workers": 1,
            "available_node_types.ray_worker_small.max_workers": MAX_WORKERS,
        },
    )
    state = Cluster(name, config, raydog_home, LocalBackend(raydog_home / "local"), marker)
    try:
        ray_cli("up", "-y", "--no-config-cache", str(config))
        (record,) = [r for r in state.backend.list_clusters() if r.name == name and r.state == "running"]
        assert record.labels[AUTOSCALER_LABEL] == "true"
        state.cluster_id = record.cluster_id
        state.tag_store_port = int(record.labels[TAG_STORE_PORT_LABEL])
        state.tag_store_password = state.password_file().read_text().strip()
        store = state.tag_store()
        state.tag_store_meta = store.get_meta()
        store.close()
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


@NODE_DIES
def test_a_worker_that_dies_is_noticed_and_replaced(cluster: Cluster) -> None:
    (worker,) = cluster.workers()
    stop_sessions([cluster.backend.node_process(cluster.cluster_id, worker.node_id)])  # it "crashes"
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

    def worker_ids() -> set[str]:  # every worker the cluster has had, running or gone
        return {
            n.node_id for n in cluster.backend.list_nodes(cluster.cluster_id) if n.role == NodeRole.WORKER
        }

    running_before, known_before = {n.node_id for n in cluster.workers()}, worker_ids()
    result = ray_cli("submit", str(cluster.config), str(script))
    assert "CPUS 5.0" in result.stdout, result.stdout[-2000:]
    # Two workers ran at the peak; once the request is withdrawn, idle scale-down may take one away.
    started = worker_ids() - known_before
    assert len(running_before) + len(started) >= 2, (running_before, started)


@CORRUPT_STATE
def test_the_monitor_survives_a_tag_store_that_lost_its_data(cluster: Cluster) -> None:
    """Every key of the tag store is gone (Redis keeps no data across a restart): the monitor goes on
    from the backend's view and replaces a worker that goes."""
    store = cluster.tag_store()
    try:
        store.clear()
        worker = cluster.workers()[0]
        cluster.backend.terminate_nodes(cluster.cluster_id, [worker.node_id])
        assert wait_until(lambda: any(n.node_id != worker.node_id for n in cluster.workers()), 120, 1.0), (
            "no replacement worker after the tag store lost its data"
        )
    finally:
        store.set_meta(cluster.tag_store_meta)  # the cluster facts, for the next tests' `ray exec`
        store.close()


@CORRUPT_STATE
def test_ray_exec_still_targets_the_cluster_when_the_client_cannot_read_the_tag_store(
    cluster: Cluster,
) -> None:
    """The client's copy of the tag store password is wrong: `ray exec` must still point Ray at this
    cluster (`RAY_ADDRESS`), not let Ray guess among the clusters on the machine."""
    cluster.password_file().write_text("not-the-password")
    try:
        output = cluster.exec("echo RAY_ADDRESS=$RAY_ADDRESS")
    finally:
        cluster.password_file().write_text(cluster.tag_store_password)
    assert f"RAY_ADDRESS=127.0.0.1:{cluster.tag_store_meta['gcs_port']}" in output, output[-2000:]


@WORKER_FAILS
def test_a_failing_worker_script_is_reported_and_the_head_stays_usable(cluster: Cluster) -> None:
    """Workers whose script fails: the failure is in the node's log, the head keeps working. (Ray's
    instance manager never sees a node that is gone before its next round, so it waits for it until
    its request timeout, 10 minutes, before it asks again: see docs/fault-matrix.md.)"""
    before = {n.node_id for n in cluster.backend.list_nodes(cluster.cluster_id)}
    cluster.broken_marker.touch()
    for worker in cluster.workers():
        cluster.backend.terminate_nodes(cluster.cluster_id, [worker.node_id])  # replacements will fail

    def failed_new_workers() -> list[NodeInfo]:
        return [
            n
            for n in cluster.backend.list_nodes(cluster.cluster_id)
            if n.node_id not in before and n.role == NodeRole.WORKER and n.status == NodeStatus.FAILED
        ]

    assert wait_until(lambda: len(failed_new_workers()) >= 1, 120, 1.0), "no replacement was tried"
    assert BROKEN_MESSAGE in failed_new_workers()[0].detail
    assert "ray_head_default" in cluster.exec("ray status")


@NODE_DIES
@WORKER_FAILS
@CORRUPT_STATE
def test_down_leaves_nothing_behind(cluster: Cluster, fault_leaks) -> None:
    store = cluster.tag_store()
    ray_cli("down", "-y", str(cluster.config))
    fault_leaks.assert_none(tag_stores=[store])
    assert cluster.backend.live_resources() == []
    assert not any(r.state == "running" for r in cluster.backend.list_clusters() if r.name == cluster.name)
    assert not is_listening("127.0.0.1", cluster.tag_store_port), "the tag store is still up"
    assert not (cluster.home / "autoscaler" / cluster.cluster_id).exists()
    assert not (cluster.home / "tokens" / cluster.cluster_id).exists()
    bundle = postmortem.read(cluster.home / "post-mortems" / f"{cluster.cluster_id}{postmortem.SUFFIX}")
    assert bundle is not None and "its head was terminated (ray down)" in bundle.summary, bundle
    assert "| head | terminated |" in bundle.summary and "monitor.log" in str(postmortem.members(bundle.path))
