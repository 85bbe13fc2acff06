"""API calls grow with pools, not nodes: reading a cluster's nodes and addresses costs the same for a
pool of 2 nodes as for a pool of 8 (real SDK, emulator; nothing is left alive)."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
from conftest import stand_in_cluster

from raydog_core.backends.base import NodeStatus
from raydog_core.backends.yellowdog.backend import YellowDogBackend
from raydog_core.testing.emulator import Emulator

pytestmark = pytest.mark.usefixtures("quick_stand_in_head")  # no real Ray head here


def _calls_to_read_nodes(emulator: Emulator, yd_kwargs: dict[str, Any], nodes: int) -> Counter[str]:
    cluster = stand_in_cluster(yd_kwargs, f"reads{nodes}", nodes)
    try:
        cluster.build(wait_for_workers=False)
        deadline = time.monotonic() + 60
        while not all(n.status == NodeStatus.RUNNING for n in cluster.nodes()):
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        fresh = YellowDogBackend(emulator.credentials(), placement=emulator.placement)  # no caches
        try:
            before = Counter(emulator.call_counts)
            found = fresh.list_nodes(cluster._cluster_id())
            calls = Counter(emulator.call_counts) - before
        finally:
            fresh.close()
        assert len(found) == nodes + 1 and all(n.private_ip for n in found)
        return calls
    finally:
        cluster.shut_down()


def test_reading_nodes_costs_calls_per_pool_not_per_node(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    small = _calls_to_read_nodes(yellowdog_emulator, yd_kwargs, 2)
    large = _calls_to_read_nodes(yellowdog_emulator, yd_kwargs, 8)
    assert small == large
    assert small["GET /workerPools/nodes"] == 2  # one node search per pool (head, workers)
    assert "GET /workerPools/nodes/{id}" not in small
    assert yellowdog_emulator.wait_until_clean() == []
