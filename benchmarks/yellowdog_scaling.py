"""YellowDog backend scaling on the emulator: API calls and wall time to build and to shut down, as the
number of pools and nodes grows. Nodes run a stand-in script (no Ray: 100 Ray nodes do not fit on two
cores), so what is measured is RayDog's and the platform API's share, not Ray's start-up.

    python -m benchmarks.yellowdog_scaling
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any
from unittest import mock

from raydog_core import RayDogCluster
from raydog_core.backends.base import NodeStatus
from raydog_core.processes import wait_until
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator

TEMPLATE = DEFAULT_TEMPLATES[0]
HEAD_SCRIPT = '#!/usr/bin/env bash\nexec python -m http.server "$RAYDOG_GCS_PORT" --bind 127.0.0.1\n'
NODE_SCRIPT = "#!/usr/bin/env bash\nexec sleep 600\n"
CASES = [(1, 1), (1, 10), (10, 10), (1, 100), (10, 100)]  # (pools, worker nodes)


def measure(emulator: Emulator, pools: int, nodes: int) -> dict[str, Any]:
    cluster = RayDogCluster(
        cluster_name=f"bench-{pools}p{nodes}n",
        backend="yellowdog",
        **emulator.cluster_kwargs(),
        head_node_compute_requirement_template_id=TEMPLATE,
        head_node_ray_start_script=HEAD_SCRIPT,
    )
    for index in range(pools):
        cluster.add_worker_pool(
            worker_pool_node_count=nodes // pools + (1 if index < nodes % pools else 0),
            worker_node_task_script=NODE_SCRIPT,
            worker_node_compute_requirement_template_id=TEMPLATE,
        )
    calls, started = emulator.calls, time.perf_counter()
    cluster.build(wait_for_workers=False)
    all_running = wait_until(lambda: all(n.status == NodeStatus.RUNNING for n in cluster.nodes()), 300, 0.2)
    build_s, build_calls = time.perf_counter() - started, emulator.calls - calls
    calls, started = emulator.calls, time.perf_counter()
    cluster.shut_down()
    left = emulator.wait_until_clean(60)
    return {
        "pools": pools,
        "nodes": nodes,
        "build_s": round(build_s, 2),
        "build_calls": build_calls,
        "shutdown_s": round(time.perf_counter() - started, 2),
        "shutdown_calls": emulator.calls - calls,
        "all_running": all_running,
        "left_alive": len(left),
    }


def run(cases: list[tuple[int, int]] = CASES) -> dict[str, Any]:
    """Run every case on one emulator; prints a table and returns the rows."""
    os.environ.setdefault("RAYDOG_HOME", tempfile.mkdtemp(prefix="raydog-bench-"))
    with Emulator() as emulator, mock.patch.dict(os.environ, emulator.environment()):  # placement too
        rows = [measure(emulator, pools, nodes) for pools, nodes in cases]
    header = [
        "pools",
        "nodes",
        "build_s",
        "build_calls",
        "shutdown_s",
        "shutdown_calls",
        "all_running",
        "left_alive",
    ]
    print(" | ".join(f"{h:>14}" for h in header))
    for row in rows:
        print(" | ".join(f"{row[h]!s:>14}" for h in header))
    return {"yellowdog_scaling": rows}


if __name__ == "__main__":
    run()
