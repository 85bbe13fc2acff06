"""`ray up` on the YellowDog emulator with real Ray, with 20% of API requests failing transiently for
the cluster's whole life (the client's and the head's monitor's requests alike). On that one cluster,
in turn: a worker's instance dies, worker scripts fail, the tag store and the client's password copy
are corrupted. The last test runs `ray down` and counts the leaks of all of them."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from raydog_core.autoscaler.provider import AUTOSCALER_LABEL, TAG_STORE_PORT_LABEL
from raydog_core.backends import create_backend
from raydog_core.backends.base import Backend, NodeInfo, NodeRole, NodeStatus
from raydog_core.processes import wait_until
from raydog_core.scripts import default_script
from raydog_core.tagstore import TagStore
from raydog_core.testing.emulator import Emulator
from tests.autoscaler.autoscaler_cli import ray_cli
from tests.faults.clients import ray_up_config, yellowdog_env

pytestmark = pytest.mark.slow

TRANSIENT = pytest.mark.fault_case("ray_up", "yellowdog", "transient_api_errors")
NODE_DIES = pytest.mark.fault_case("ray_up", "yellowdog", "node_dies_mid_run")
WORKER_FAILS = pytest.mark.fault_case("ray_up", "yellowdog", "worker_script_fails")
CORRUPT_STATE = pytest.mark.fault_case("ray_up", "yellowdog", "corrupt_state")
BROKEN_MESSAGE = "worker: broken on purpose"
ERROR_RATE = 0.2
CAP_NODE_HOURS = 50


@dataclass
class Cluster:
    name: str
    config: Path
    home: Path
    backend: Backend
    emulator: Emulator
    broken_marker: Path
    cluster_id: str = ""
    tag_store: TagStore | None = None  # opened at start: a test corrupts the client's password copy
    meta: dict[str, str] | None = None  # the cluster facts in the tag store, read at start
    password: str = ""

    def nodes(self) -> list[NodeInfo]:
        return self.backend.list_nodes(self.cluster_id)

    def workers(self) -> list[NodeInfo]:
        return [n for n in self.nodes() if n.role == NodeRole.WORKER and n.status == NodeStatus.RUNNING]

    def steady_worker(self, settle_s: float = 3.0, timeout_s: float = 120.0) -> NodeInfo:
        """The one running worker, once the same one has been the only one for `settle_s`: with 20 % of
        API calls failing, Ray's instance manager may launch a spare and terminate it again meanwhile."""
        seen: list[tuple[str, float]] = []

        def settled() -> bool:
            workers = self.workers()
            now = time.monotonic()
            if len(workers) != 1:
                seen.clear()
                return False
            if not seen or seen[0][0] != workers[0].node_id:
                seen[:] = [(workers[0].node_id, now)]
            return now - seen[0][1] >= settle_s

        assert wait_until(settled, timeout_s, 0.5), f"no single steady worker: {self.workers()}"
        return self.workers()[0]

    def exec(self, command: str) -> str:
        return ray_cli("exec", str(self.config), command).stdout

    def password_file(self) -> Path:
        return self.home / "autoscaler" / self.cluster_id / "tag-store.password"


def worker_script(marker: Path) -> str:
    """RayDog's default worker script, except that it fails at once while `marker` exists."""
    check = f'if [ -e "{marker}" ]; then echo "{BROKEN_MESSAGE}" >&2; exit 5; fi\n'
    return default_script("worker").replace("\n", "\n" + check, 1)


@pytest.fixture(scope="module")
def cluster(
    raydog_home: Path, yellowdog_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    directory = tmp_path_factory.mktemp("ray-up-yd")
    name = f"ydf-{secrets.token_hex(3)}"
    marker = directory / "workers-broken"
    config = ray_up_config(
        directory,
        name,
        "yellowdog",
        idle_timeout_minutes=0.25,
        max_workers=1,
        **{
            "provider.autoscaler_update_interval_s": 1,
            "provider.head_node_tag_server_port": 0,
            "provider.max_node_hours": CAP_NODE_HOURS,
            "provider.ray_worker_node_task_script": worker_script(marker),
            "available_node_types.ray_worker_small.min_workers": 1,
            "available_node_types.ray_worker_small.max_workers": 1,
        },
    )
    backend = create_backend("yellowdog", yellowdog_emulator.credentials())
    state = Cluster(name, config, raydog_home, backend, yellowdog_emulator, marker)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in yellowdog_env(yellowdog_emulator).items():
            patch.setenv(key, value)
        yellowdog_emulator.faults.error_rate = ERROR_RATE
        try:
            ray_cli("up", "-y", "--no-config-cache", str(config))
            (record,) = [r for r in backend.list_clusters() if r.name == name and r.state == "running"]
            assert record.labels[AUTOSCALER_LABEL] == "true"
            state.cluster_id = record.cluster_id
            port = int(record.labels[TAG_STORE_PORT_LABEL])
            state.password = state.password_file().read_text().strip()
            state.tag_store = TagStore(name, port, state.password)
            state.meta = state.tag_store.get_meta()
            yield state
        finally:
            yellowdog_emulator.faults.error_rate = 0.0
            for record in backend.list_clusters():  # only if a test failed before `ray down`
                if record.name == name:
                    ray_cli("down", "-y", str(config), check=False)
                    backend.shut_down(record.cluster_id)
            if state.tag_store is not None:
                state.tag_store.close()
            backend.close()


def test_the_spend_cap_is_a_platform_allowance_read_back_as_the_clusters_spend(cluster: Cluster) -> None:
    """`provider.max_node_hours`: a hard allowance on this cluster's instances, made with the cluster
    (`ray down` removes it: the last test's leak count includes allowances)."""
    status = cluster.backend.spend(cluster.cluster_id)
    assert status is not None and status.cap_hours == CAP_NODE_HOURS, status
    assert 0 <= status.used_hours < 1


@TRANSIENT
def test_up_and_min_workers_work_through_transient_errors(cluster: Cluster) -> None:
    assert wait_until(lambda: len(cluster.workers()) == 1, 120, 1.0), "min_workers=1 never started"
    assert "ray_head_default" in cluster.exec("ray status")
    assert cluster.emulator.faults.injected_errors > 0


@TRANSIENT
@NODE_DIES
def test_a_worker_whose_instance_dies_is_replaced(cluster: Cluster) -> None:
    worker = cluster.steady_worker()
    cluster.emulator.kill_instance_of_task(worker.node_id)
    dead = next(n for n in cluster.nodes() if n.node_id == worker.node_id)
    # FAILED (ALLOCATION_LOST) as the platform reports it; the emulator sets that only after a stop grace,
    # in which Ray's autoscaler, seeing the raylet gone, may cancel the task first (TERMINATED). Known gap
    # of the emulator's model, to fix there; either way the node is gone and must be replaced.
    assert dead.status.is_final, dead
    assert dead.status == NodeStatus.TERMINATED or "ALLOCATION_LOST" in dead.detail, dead
    assert wait_until(lambda: any(n.node_id != worker.node_id for n in cluster.workers()), 120, 1.0), (
        "the dead worker was not replaced (min_workers=1)"
    )


@TRANSIENT
@CORRUPT_STATE
def test_the_monitor_survives_a_tag_store_that_lost_its_data(cluster: Cluster) -> None:
    """Every key of the tag store is gone (Redis keeps no data across a restart): the monitor goes on
    from the backend's view and replaces a worker that goes."""
    try:
        worker = cluster.steady_worker()
        cluster.tag_store.clear()
        cluster.backend.terminate_nodes(cluster.cluster_id, [worker.node_id])
        assert wait_until(lambda: any(n.node_id != worker.node_id for n in cluster.workers()), 120, 1.0), (
            "no replacement worker after the tag store lost its data"
        )
    finally:
        cluster.tag_store.set_meta(cluster.meta)  # the cluster facts, for the next tests' `ray exec`


@CORRUPT_STATE  # not TRANSIENT: the defect has nothing to do with the API errors
def test_ray_exec_still_targets_the_cluster_when_the_client_cannot_read_the_tag_store(
    cluster: Cluster,
) -> None:
    cluster.password_file().write_text("not-the-password")
    try:
        output = cluster.exec("echo RAY_ADDRESS=$RAY_ADDRESS")
    finally:
        cluster.password_file().write_text(cluster.password)
    assert f"RAY_ADDRESS=127.0.0.1:{cluster.meta['gcs_port']}" in output, output[-2000:]


@TRANSIENT
@WORKER_FAILS
def test_failing_worker_scripts_are_reported_and_the_head_stays_usable(cluster: Cluster) -> None:
    """See the local test of the same name for why no replacement is awaited after the fix."""
    before = {n.node_id for n in cluster.nodes()}
    cluster.broken_marker.touch()
    cluster.backend.terminate_nodes(cluster.cluster_id, [n.node_id for n in cluster.workers()])

    def failed_new_workers() -> list[NodeInfo]:
        return [
            n
            for n in cluster.nodes()
            if n.node_id not in before and n.role == NodeRole.WORKER and n.status == NodeStatus.FAILED
        ]

    assert wait_until(lambda: len(failed_new_workers()) >= 1, 120, 1.0), "no replacement was tried"
    assert "code 5" in failed_new_workers()[0].detail
    assert "ray_head_default" in cluster.exec("ray status")  # the head answers meanwhile


@TRANSIENT
@NODE_DIES
@WORKER_FAILS
@CORRUPT_STATE
def test_zz_down_through_transient_errors_leaves_nothing(cluster: Cluster, fault_leaks) -> None:
    ray_cli("down", "-y", str(cluster.config))
    fault_leaks.assert_none(emulator=cluster.emulator, tag_stores=[cluster.tag_store], wait_s=30)
