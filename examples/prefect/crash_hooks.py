"""No orphaned clusters, even when the flow's process is killed outright.

    python examples/prefect/crash_hooks.py

Three layers, from the most to the least common case:

1. RayDogTaskRunner shuts its cluster down whenever Python still runs in the flow's process: success,
   failure, timeout, SIGTERM, Ctrl+C.
2. SIGKILL, OOM or a deleted pod leave no chance to do that. Prefect's runner or worker then marks the
   run Crashed and calls its `on_crashed` hooks; `shut_down_flow_run_cluster` finds the cluster by its
   flow-run label and shuts it down. Cancelling from the UI calls `on_cancellation` the same way.
   The hook and the runner's teardown are idempotent: whichever runs second does nothing and says so.
3. `cluster_lifetime`: every node stops by itself after this long, with nobody left to ask it.
   `raydog reap --label prefect-flow-run-id=<id>` does the same as the hook from a shell.

This example serves the flow; start a run from the UI or CLI, then kill the serving process's child
with `kill -9` to watch the crash hook clean up. With `--once` it runs once here and exits.
"""

from __future__ import annotations

import sys
import time
from datetime import timedelta

from prefect import flow, task

from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, shut_down_flow_run_cluster

CLUSTER = RayDogClusterConfig(cluster_name="guarded", cluster_lifetime=timedelta(hours=1))


@task
def slow_step(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@flow(
    task_runner=RayDogTaskRunner(cluster=CLUSTER),
    on_crashed=[shut_down_flow_run_cluster],
    on_cancellation=[shut_down_flow_run_cluster],
    on_failure=[shut_down_flow_run_cluster],
)
def guarded(seconds: float = 2.0) -> float:
    return sum(slow_step.map([seconds] * 4).result())


if __name__ == "__main__":
    if "--once" in sys.argv:
        print("slept", guarded(), "s in total")
    else:
        guarded.serve(name="guarded")
