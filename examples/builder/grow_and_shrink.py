"""A real workload on a local RayDog cluster: build head + 2 workers, spread work over every node,
grow by a pool, shrink again, and shut down cleanly (nothing is left running).

    python examples/builder/grow_and_shrink.py
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections import Counter

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raydog_core import RayDogCluster


@ray.remote(num_cpus=1)
def estimate_pi(samples: int, seed: int) -> tuple[str, int]:
    """Monte Carlo hits inside the unit circle, and which Ray node computed them."""
    rng = random.Random(seed)
    hits = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    return ray.get_runtime_context().get_node_id()[:8], hits


def run_batch(batch: int, tasks: int, samples: int = 1_000_000) -> Counter:
    """Deal the tasks round-robin over every alive node, so each node does its share."""
    started = time.monotonic()
    nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
    results = ray.get(
        [
            estimate_pi.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(nodes[i % len(nodes)], soft=False)
            ).remote(samples, batch * 1000 + i)
            for i in range(tasks)
        ]
    )
    pi = 4 * sum(hits for _, hits in results) / (tasks * samples)
    per_node = Counter(node for node, _ in results)
    print(
        f"batch {batch}: pi ~ {pi:.5f} from {tasks} tasks on {len(per_node)} nodes {dict(per_node)} "
        f"in {time.monotonic() - started:.1f} s"
    )
    return per_node


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with RayDogCluster(cluster_name="demo") as cluster:
        cluster.add_worker_pool(worker_pool_node_count=2, worker_pool_internal_name="cpu")
        started = time.monotonic()
        private_ip, _ = cluster.build()
        print(
            f"cluster up in {time.monotonic() - started:.1f} s on {socket.gethostname()} ({private_ip}); "
            f"dashboard {cluster.dashboard_url}; node logs in {cluster.log_dir}"
        )
        ray.init(address=cluster.ray_address, log_to_driver=False)

        assert len(run_batch(1, tasks=12)) == 3, "work should reach the head and both workers"

        cluster.add_worker_pool(worker_pool_node_count=1, worker_pool_internal_name="burst")
        cluster.wait_for_nodes(4, timeout=120)
        print("grew to", len([n for n in ray.nodes() if n["Alive"]]), "nodes")
        assert len(run_batch(2, tasks=16)) == 4, "work should reach the new node too"

        cluster.remove_worker_pool_by_internal_name("burst")
        deadline = time.monotonic() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) > 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        print("shrank to", len([n for n in ray.nodes() if n["Alive"]]), "nodes")
        run_batch(3, tasks=12)
        ray.shutdown()
        state = cluster.save_state_to_json()
    left = cluster.nodes()
    assert all(node.status.is_final for node in left), left
    print(f"shut down; {len(left)} nodes stopped; saved state was {len(state)} bytes with no secrets")


if __name__ == "__main__":
    main()
