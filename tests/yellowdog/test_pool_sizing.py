"""The autoscaler terminates nodes one at a time and asks for new ones later: on YellowDog a node whose
task was cancelled idles until its idle shutdown, and must take the next task rather than have a new
machine provisioned beside it (found by the soak: up to 24 idle machines alive at once)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from raydog_core.backends import create_backend
from raydog_core.backends.base import ClusterOptions, NodeLaunch, NodeRole, NodeStatus
from raydog_core.backends.yellowdog.backend import YellowDogBackend
from raydog_core.processes import wait_until
from raydog_core.spec import YellowDogNodeOptions
from raydog_core.testing.emulator import Emulator
from tests.yellowdog.conftest import SLEEP_SCRIPT, TEMPLATE


@pytest.fixture
def backend(yellowdog_emulator: Emulator, raydog_home) -> Iterator[YellowDogBackend]:
    backend = create_backend("yellowdog", yellowdog_emulator.credentials())
    yield backend
    backend.close()


def launch(role: NodeRole, name: str) -> NodeLaunch:
    options = YellowDogNodeOptions(compute_requirement_template_id=TEMPLATE)
    return NodeLaunch(role=role, pool_name=name, script=SLEEP_SCRIPT, env={}, yellowdog=options)


def test_idle_nodes_take_the_next_tasks_instead_of_new_machines(
    backend: YellowDogBackend, yellowdog_emulator: Emulator
) -> None:
    handle = backend.open_cluster(ClusterOptions(name="sizing", namespace="raydog-test"))
    cluster_id = handle.cluster_id
    try:
        backend.create_pool(cluster_id, launch(NodeRole.HEAD, "sizing-head"), 1)
        worker = launch(NodeRole.WORKER, "sizing-w1")
        pool_id, first = backend.create_pool(cluster_id, worker, 3)

        def running(ids: list[str]) -> bool:
            status = {n.node_id: n.status for n in backend.list_nodes(cluster_id)}
            return all(status.get(i) == NodeStatus.RUNNING for i in ids)

        def alive_instances() -> int:
            return sum(1 for i in yellowdog_emulator.instances() if i.status in ("PENDING", "RUNNING"))

        assert wait_until(lambda: running(first), 60), "the first workers never ran"
        backend.terminate_nodes(cluster_id, first)
        second = backend.add_nodes(cluster_id, pool_id, worker, 3)
        assert wait_until(lambda: running(second), 60), "the idle nodes did not take the new tasks"
        assert alive_instances() == 4, "a machine was provisioned beside an idle one"

        more = backend.add_nodes(cluster_id, pool_id, worker, 2)  # beyond the idle ones: the pool grows
        assert wait_until(lambda: running(more), 60) and alive_instances() == 6
    finally:
        assert backend.shut_down(cluster_id) == []
    assert yellowdog_emulator.wait_until_clean() == []
