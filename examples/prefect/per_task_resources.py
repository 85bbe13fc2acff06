"""Send each task to the nodes that have what it needs, with prefect-ray's remote_options.

    python examples/prefect/per_task_resources.py

Two worker pools: general CPU workers and one node advertising a custom "big_memory" resource.
`remote_options` sets Ray options (num_cpus, num_gpus, resources, memory, ...) for the tasks
submitted inside it.
"""

from __future__ import annotations

import ray
from prefect import flow, task

from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, remote_options

CLUSTER = RayDogClusterConfig(
    cluster_name="resources-demo",
    worker_pools=[
        {
            "worker_pool_node_count": 1,
            "worker_pool_internal_name": "cpu",
            "worker_node_resources": {"num_cpus": 2},
        },
        {
            "worker_pool_node_count": 1,
            "worker_pool_internal_name": "big-memory",
            "worker_node_resources": {"num_cpus": 1, "resources": {"big_memory": 1}},
        },
    ],
)


@task
def where() -> str:
    return ray.get_runtime_context().get_node_id()[:8]


@flow(task_runner=RayDogTaskRunner(cluster=CLUSTER))
def placed() -> dict[str, list[str]]:
    with remote_options(num_cpus=2):
        two_cpu = [f.result() for f in [where.submit() for _ in range(2)]]
    with remote_options(num_cpus=1, resources={"big_memory": 1}):
        big = [f.result() for f in [where.submit() for _ in range(2)]]
    print(f"2-CPU tasks ran on nodes {two_cpu}; big-memory tasks on {big}")
    return {"two_cpu": two_cpu, "big_memory": big}


if __name__ == "__main__":
    placed()
