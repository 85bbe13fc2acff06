"""A pool short of nodes for its waiting tasks is resized when the cluster's nodes are listed: the state
the platform is in when a node is lost just before its replacement is added (see `starved_pools`)."""

from __future__ import annotations

from typing import Any

import pytest

from raydog_core.backends.base import NodeLaunch, NodeRole, NodeStatus
from raydog_core.backends.yellowdog import starved_pools
from raydog_core.processes import wait_until
from raydog_core.testing.emulator import Emulator
from tests.yellowdog.conftest import SLEEP_SCRIPT, stand_in_cluster

pytestmark = pytest.mark.usefixtures("quick_stand_in_head")  # no real Ray head here


def test_a_task_waiting_in_a_pool_short_of_nodes_gets_a_node(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(starved_pools, "STARVED_AFTER_S", 0.0)
    cluster = stand_in_cluster(yd_kwargs, "starved", 1)
    try:
        cluster.build(wait_for_workers=False)
        backend = cluster._ensure_backend()
        cluster_id = cluster._cluster_id()
        pool = cluster.state.pools[-1]
        assert wait_until(lambda: _running_workers(backend, cluster_id) == 1, 60, 0.5)
        launch = NodeLaunch(NodeRole.WORKER, f"{cluster.spec.cluster_name}-w1", SLEEP_SCRIPT, env={})
        yellowdog_emulator.faults.boot_delay_s = 30.0  # the new instance is still booting, without a task
        (new,) = backend.add_nodes(cluster_id, pool.pool_id, launch, 1)
        # As if the platform had counted a node that was about to go: one node for two tasks, and the
        # new task waits for a node nobody provisions.
        backend._client.worker_pool_client.resize_worker_pool_by_id(pool.pool_id, 1)
        yellowdog_emulator.faults.boot_delay_s = 0.0
        assert _running_workers(backend, cluster_id) == 1
        assert wait_until(lambda: _running_workers(backend, cluster_id) == 2, 60, 0.5), backend.list_nodes(
            cluster_id
        )
        assert any(
            n.node_id == new and n.status == NodeStatus.RUNNING for n in backend.list_nodes(cluster_id)
        )
    finally:
        cluster.shut_down()
    assert yellowdog_emulator.wait_until_clean() == []


def _running_workers(backend: Any, cluster_id: str) -> int:
    nodes = backend.list_nodes(cluster_id)
    return sum(1 for n in nodes if n.role == NodeRole.WORKER and n.status == NodeStatus.RUNNING)
