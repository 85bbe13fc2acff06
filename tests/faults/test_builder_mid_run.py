"""Builder faults on a running local cluster with real Ray, one cluster for the module, faults in turn:
a worker node dies while tasks run on it, the client that built the cluster is killed with SIGKILL,
and the recovery uses a state file saved before the cluster last changed (stale). The last test is the
leak check of all three: a cell passes only if its test and that check pass."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import ray

from raydog_core import auth
from raydog_core.backends.base import NodeRole, NodeStatus
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.client_auth import ClientAuthScope
from raydog_core.processes import stop_sessions, wait_until
from raydog_core.state import ClusterState
from tests.faults.clients import raydog, signal_and_wait, start

pytestmark = pytest.mark.slow

BUILDER = """
import sys, time
from raydog_core import RayDogCluster
cluster = RayDogCluster(cluster_name=sys.argv[1], on_state=lambda s: s.write(sys.argv[2]))
cluster.add_worker_pool(worker_pool_node_count=2, worker_pool_internal_name="cpu")
with cluster:
    cluster.build()
    open(sys.argv[3], "w").close()
    time.sleep(600)  # the user's work
"""
NODE_DIES = pytest.mark.fault_case("builder", "local", "node_dies_mid_run")
CLIENT_SIGKILL = pytest.mark.fault_case("builder", "local", "client_sigkill")
STALE_STATE = pytest.mark.fault_case("builder", "local", "stale_state")


@dataclass
class Running:
    client: object
    state_file: Path
    backend: LocalBackend

    @property
    def state(self) -> ClusterState:
        return ClusterState.from_file(self.state_file)

    def nodes(self, role: NodeRole | None = None, status: NodeStatus = NodeStatus.RUNNING) -> list:
        return [
            n
            for n in self.backend.list_nodes(self.state.cluster_id)
            if n.status == status and (role is None or n.role == role)
        ]


@pytest.fixture(scope="module")
def running(raydog_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    directory = tmp_path_factory.mktemp("builder-mid-run")
    state_file, built = directory / "state.json", directory / "built"
    client = start([sys.executable, "-c", BUILDER, "midrun", str(state_file), str(built)])
    try:
        if not wait_until(lambda: client.poll() is not None or built.exists(), 180, 0.5):
            raise AssertionError("the cluster was not built within 180 s")
        assert client.poll() is None, client.communicate()[0]
        yield Running(client, state_file, LocalBackend(raydog_home / "local"))
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        raydog("down", str(state_file))


@ray.remote(num_cpus=1, max_retries=3)
def slow_square(x: int) -> tuple[int, str]:
    time.sleep(3)
    return x * x, ray.get_runtime_context().get_node_id()


@NODE_DIES
def test_a_worker_dies_mid_run_the_work_finishes_and_status_names_the_node(running: Running) -> None:
    state = running.state
    with ClientAuthScope(auth.client_environment(state.cluster_id, state.auth_mode)):
        victim = _run_through_a_worker_death(running)
    status = raydog("status", str(running.state_file))
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if victim in line)
    assert "failed" in line and "its script exited" in status.stdout, status.stdout


def _run_through_a_worker_death(running: Running) -> str:
    """Kills a worker while six two-round tasks run; returns the dead node's id."""
    ray.init(address=running.state.ray_address)
    try:
        futures = [slow_square.remote(x) for x in range(6)]  # 3 CPUs: two rounds, on every node
        time.sleep(1.5)
        victim = running.nodes(NodeRole.WORKER)[0]
        stop_sessions([running.backend.node_process(running.state.cluster_id, victim.node_id)])
        results = ray.get(futures, timeout=120)
    finally:
        ray.shutdown()
    assert sorted(r[0] for r in results) == [x * x for x in range(6)]
    return victim.node_id


@CLIENT_SIGKILL
def test_the_builder_killed_outright_leaves_its_cluster_running(running: Running) -> None:
    signal_and_wait(running.client, signal.SIGKILL)
    assert len(running.nodes(NodeRole.HEAD)) == 1 and running.nodes(NodeRole.WORKER), "the cluster went too"


@NODE_DIES
@CLIENT_SIGKILL
@STALE_STATE
def test_zz_down_from_a_state_saved_before_a_pool_was_added_stops_everything(
    running: Running, tmp_path: Path, fault_leaks
) -> None:
    """The documented recovery of a killed client is `raydog down <state file>`; here the file is stale:
    another process added a pool after it was saved. The backend, not the file, knows every node."""
    stale = tmp_path / "stale.json"
    stale.write_text(running.state_file.read_text())
    current = tmp_path / "current.json"
    current.write_text(running.state_file.read_text())
    added = raydog("add-pool", str(current), "--nodes", "1", "--name", "late")
    assert added.returncode == 0, added.stderr
    assert len(json.loads(current.read_text())["pools"]) > len(json.loads(stale.read_text())["pools"])
    recovery = raydog("down", str(stale))
    assert recovery.returncode == 0, recovery.stderr
    fault_leaks.assert_none()
