"""A nightly batch on a fresh Ray cluster: serve the flow with a cron schedule.

    python examples/prefect/scheduled_batch.py          # serve: runs at 02:00 every night, until Ctrl+C
    python examples/prefect/scheduled_batch.py --once   # one run now, then exit

The cluster configuration is a Block loaded by name when each run starts, so it can be changed in the
Prefect UI between runs. The first start saves a default local configuration as "nightly".
"""

from __future__ import annotations

import sys

from prefect import flow, task

from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, shut_down_flow_run_cluster

BLOCK_NAME = "nightly"


def ensure_block() -> None:
    """Save a default configuration under BLOCK_NAME unless one exists (edit it in the UI afterwards)."""
    try:
        RayDogClusterConfig.load(BLOCK_NAME)
    except ValueError:
        RayDogClusterConfig(cluster_name="nightly").save(BLOCK_NAME)


@task
def process_partition(partition: int) -> int:
    return sum(range(partition * 1000, (partition + 1) * 1000))


@flow(
    task_runner=RayDogTaskRunner(cluster=BLOCK_NAME),  # loaded when each run starts
    on_crashed=[shut_down_flow_run_cluster],
    on_cancellation=[shut_down_flow_run_cluster],
)
def nightly_batch(partitions: int = 8) -> int:
    return sum(process_partition.map(range(partitions)).result())


if __name__ == "__main__":
    ensure_block()
    if "--once" in sys.argv:
        print("total:", nightly_batch())
    else:
        nightly_batch.serve(name="nightly-batch", cron="0 2 * * *")
