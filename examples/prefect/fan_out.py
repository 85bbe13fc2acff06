"""Fan work out over a Ray cluster that exists only while the flow runs (the README's main job).

    python examples/prefect/fan_out.py

The task runner builds a local RayDog cluster (a head and two workers, each its own process session on
this machine), runs the flow's tasks on every node and shuts the cluster down when the flow ends,
however it ends. Task logs show in the Prefect UI like any other task's. `RayDogTaskRunner()` with no
arguments is the zero-config version: a head and one worker.
"""

from __future__ import annotations

import random
from collections import Counter

import ray
from prefect import flow, get_run_logger, task

from raydog_core import ClusterSpec
from raydog_prefect import RayDogTaskRunner

CLUSTER = ClusterSpec(cluster_name="fan-out", worker_pools=[{"worker_pool_node_count": 2}])


@task
def estimate_pi(chunk: int, samples: int = 400_000) -> tuple[str, int]:
    """Monte Carlo hits in the unit circle for one chunk, and the Ray node that computed them."""
    rng = random.Random(chunk)
    hits = sum(1 for _ in range(samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
    node = ray.get_runtime_context().get_node_id()[:8]
    get_run_logger().info("chunk %d: %d hits on node %s", chunk, hits, node)
    return node, hits


@flow(task_runner=RayDogTaskRunner(cluster=CLUSTER), log_prints=True)
def fan_out(chunks: int = 24, samples: int = 400_000) -> float:
    results = estimate_pi.map(range(chunks), samples=samples).result()
    pi = 4 * sum(hits for _, hits in results) / (chunks * samples)
    nodes = Counter(node for node, _ in results)
    print(f"pi ~ {pi:.5f} from {chunks} tasks on {len(nodes)} Ray nodes: {dict(nodes)}")
    return pi


if __name__ == "__main__":
    fan_out()
