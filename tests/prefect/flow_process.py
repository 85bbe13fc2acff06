"""A flow run in its own process, for the tests that signal or kill the flow's process.

Its task writes a marker file once it runs on the cluster, then sleeps; the test then signals the
process. Run as: python flow_process.py MARKER_FILE
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from prefect import flow, task

from raydog_core.spec import NodeResources
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, shut_down_flow_run_cluster

CONFIG = RayDogClusterConfig(
    cluster_name="signalled", worker_pools=[], head_node_resources=NodeResources(num_cpus=2)
)


@task
def mark_and_sleep(marker: str) -> None:
    Path(marker).write_text("running")
    time.sleep(300)


@flow(
    task_runner=RayDogTaskRunner(cluster=CONFIG),
    on_crashed=[shut_down_flow_run_cluster],
    on_cancellation=[shut_down_flow_run_cluster],
)
def signalled_flow(marker: str) -> None:
    mark_and_sleep.submit(marker).result()


if __name__ == "__main__":
    signalled_flow(sys.argv[1])
