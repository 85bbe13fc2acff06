"""A flow run in its own process, for the tests that signal or kill the flow's process.

Its task writes a marker file once it runs on the cluster, then sleeps; the test then signals the
process (or signals it earlier, while the cluster is still being built).
Run as: python flow_process.py MARKER_FILE [CONFIG_JSON]
CONFIG_JSON holds RayDogClusterConfig fields without credentials (a YellowDog key comes from YD_API_*).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

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


def signalled_flow_for(config: RayDogClusterConfig) -> Any:
    """The flow on this cluster config, with the crash hooks a deployed flow would carry."""

    @flow(
        name="signalled-flow",
        task_runner=RayDogTaskRunner(cluster=config),
        on_crashed=[shut_down_flow_run_cluster],
        on_cancellation=[shut_down_flow_run_cluster],
    )
    def signalled_flow(marker: str) -> None:
        mark_and_sleep.submit(marker).result()

    return signalled_flow


signalled_flow = signalled_flow_for(CONFIG)


if __name__ == "__main__":
    chosen = (
        RayDogClusterConfig.model_validate_json(Path(sys.argv[2]).read_text())
        if len(sys.argv) > 2
        else CONFIG
    )
    signalled_flow_for(chosen)(sys.argv[1])
