"""The cost of one autoscaler update in RayDogNodeProvider at 10, 100 and 1,000 nodes.

One update is what the v2 monitor does every round: `non_terminated_nodes({})`, then `node_tags`,
`is_running` and `internal_ip` for every node. Measured: backend calls and tag-store round trips per
update (target: O(1), i.e. one of each whatever the node count) and milliseconds (target: < 50 ms at
1,000 nodes).

The provider runs as on the head (head-mode environment) against a real redis-server with a password.
The backend is an in-memory implementation of the Backend protocol that returns N nodes from one
`list_nodes` call: this isolates the provider's and the tag store's share. (The YellowDog emulator
runs every node as a local process, and 1,000 of those do not fit this 2-core machine; the
emulator's own list cost is in yellowdog_scaling.)

    python -m benchmarks.autoscaler_update_cost
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from unittest import mock

from ray.autoscaler.tags import TAG_RAY_NODE_KIND, TAG_RAY_NODE_STATUS, TAG_RAY_USER_NODE_TYPE

from raydog_core.autoscaler import RayDogNodeProvider
from raydog_core.backends.base import BackendCapabilities, NodeInfo, NodeRole, NodeStatus
from raydog_core.tagstore import TagStore
from raydog_core.testing.services import _stop, start_redis

NODE_COUNTS = (10, 100, 1000)
UPDATES = 20
CLUSTER = "bench"
CLUSTER_ID = "bench-0001"


class InMemoryBackend:
    """The Backend protocol's read side over a fixed node list, counting calls."""

    kind = "local"
    capabilities = BackendCapabilities(nodes_reachable=True, nodes_on_client_host=True)

    def __init__(self, nodes: Sequence[NodeInfo]) -> None:
        self.nodes = list(nodes)
        self.calls = 0

    def list_nodes(self, cluster_id: str) -> list[NodeInfo]:
        self.calls += 1
        return list(self.nodes)

    def close(self) -> None:
        pass


def _nodes(count: int) -> list[NodeInfo]:
    head = NodeInfo("bench-head-n1", "bench-head", NodeRole.HEAD, NodeStatus.RUNNING, "10.0.0.1", "10.0.0.1")
    workers = [
        NodeInfo(
            f"bench-w1-n{i}",
            "bench-w1",
            NodeRole.WORKER,
            NodeStatus.RUNNING,
            f"10.0.{i // 250}.{i % 250 + 2}",
        )
        for i in range(count - 1)
    ]
    return [head, *workers]


def _provider_config() -> dict[str, Any]:
    return {
        "type": "external",
        "module": "raydog_core.autoscaler.RayDogNodeProvider",
        "backend": "local",
        "ray_auth_mode": "disabled",
        "node_types": {},
    }


def measure(redis_port: int, password_file: Path, count: int) -> dict[str, Any]:
    nodes = _nodes(count)
    store = TagStore.on_head(CLUSTER, redis_port, password_file)
    store.clear()
    store.set_tags([nodes[0].node_id], {TAG_RAY_NODE_KIND: "head", TAG_RAY_USER_NODE_TYPE: "head"})
    store.set_tags(
        [n.node_id for n in nodes[1:]],
        {TAG_RAY_NODE_KIND: "worker", TAG_RAY_USER_NODE_TYPE: "cpu", TAG_RAY_NODE_STATUS: "up-to-date"},
    )
    backend = InMemoryBackend(nodes)
    env = {
        "RAYDOG_ROLE": "head",
        "RAYDOG_CLUSTER_NAME": CLUSTER,
        "RAYDOG_CLUSTER_ID": CLUSTER_ID,
        "RAYDOG_TAG_STORE_PORT": str(redis_port),
        "RAYDOG_TAG_STORE_PASSWORD_FILE": str(password_file),
    }
    with mock.patch.dict(os.environ, env):
        provider = RayDogNodeProvider(_provider_config(), CLUSTER, backend=backend)
        provider.non_terminated_nodes({})  # connect once, as the monitor does at start
        assert provider._tag_store is not None
        backend.calls, provider._tag_store.round_trips = 0, 0
        timings = []
        for _ in range(UPDATES):
            started = time.perf_counter()
            ids = provider.non_terminated_nodes({})
            for node_id in ids:
                provider.node_tags(node_id)
                provider.is_running(node_id)
                provider.internal_ip(node_id)
            timings.append((time.perf_counter() - started) * 1000)
        assert len(ids) == count
        round_trips = provider._tag_store.round_trips
        provider._tag_store.close()
    store.clear()
    store.close()
    return {
        "nodes": count,
        "backend_calls_per_update": backend.calls / UPDATES,
        "tag_store_round_trips_per_update": round_trips / UPDATES,
        "median_ms": round(statistics.median(timings), 2),
        "max_ms": round(max(timings), 2),
    }


def run() -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="rd-bench-redis-"))
    server, proc = start_redis(directory)
    try:
        results = {f"{n}_nodes": measure(server.port, server.password_file, n) for n in NODE_COUNTS}
    finally:
        _stop(proc)
        shutil.rmtree(directory, ignore_errors=True)
    results["backend"] = "in-memory Backend protocol implementation (see module docstring); real redis-server"
    return results


if __name__ == "__main__":
    table = run()
    print(f"{'nodes':>6} {'backend calls':>14} {'redis round trips':>18} {'median ms':>10} {'max ms':>8}")
    for row in table.values():
        if isinstance(row, dict):
            print(
                f"{row['nodes']:>6} {row['backend_calls_per_update']:>14} "
                f"{row['tag_store_round_trips_per_update']:>18} {row['median_ms']:>10} {row['max_ms']:>8}"
            )
    print(table["backend"])
