"""What the lease machinery costs in memory, beside what a node costs: the head's watchdog and a worker's
head watch (a bash loop) against the whole head node and a whole worker node, in one leased local
cluster; and a whole RayDog worker node against a plain `ray start` worker joined to the same head.
Figures are PSS (proportional set size: shared pages split between the processes sharing them).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psutil

from raydog_core import RayDogCluster, auth, processes
from raydog_core.backends.base import NodeRole
from raydog_core.ray_nodes import alive_ray_nodes

MIB = 1024 * 1024
TARGET_MIB = 50.0  # any supervisor process of ours
SETTLE_S = 15.0


def _pss(procs: list[psutil.Process]) -> float:
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            continue
    return total / MIB


def _session(cluster: RayDogCluster, node_id: str) -> list[psutil.Process]:
    backend = cluster._ensure_backend()
    return processes.session_members([backend.node_process(cluster.cluster_id, node_id)])  # type: ignore[attr-defined]


@contextmanager
def _plain_worker(cluster: RayDogCluster) -> Iterator[processes.ProcessRef]:
    """A worker started by hand, `ray start --address=... --block`, joined to the same head: the anchor
    for what a RayDog worker node costs. Stopped (its whole session) when the block ends."""
    from benchmarks.cluster_up import _node_args

    ray = str(Path(sys.executable).parent / "ray")
    before = len(alive_ray_nodes(cluster.dashboard_url or "", auth.load_token(cluster.cluster_id or "")))
    with tempfile.TemporaryDirectory(prefix="rb-", dir="/tmp") as work:
        argv = [ray, "start", f"--address={cluster.ray_address}", "--block", *_node_args(Path(work), 1)]
        env = {**os.environ, **cluster.client_environment()}
        _, ref = processes.start_session(argv, env, work, str(Path(work) / "log"))
        try:
            token = auth.load_token(cluster.cluster_id or "")
            processes.wait_until(
                lambda: len(alive_ray_nodes(cluster.dashboard_url or "", token)) > before, 120, 0.5
            )
            time.sleep(SETTLE_S)  # its agents start after it joined, like the RayDog worker's did
            yield ref
        finally:
            processes.stop_sessions([ref])


def run() -> dict[str, float]:
    with RayDogCluster(cluster_name="bench-lease", lease_timeout=timedelta(minutes=2)) as cluster:
        cluster.add_worker_pool(worker_pool_node_count=1)
        cluster.build()
        nodes = cluster.nodes()
        head = next(n for n in nodes if n.role == NodeRole.HEAD)
        worker = next(n for n in nodes if n.role == NodeRole.WORKER)
        head_procs, worker_procs = _session(cluster, head.node_id), _session(cluster, worker.node_id)
        watchdog = [p for p in head_procs if "The watchdog on a cluster" in " ".join(p.cmdline())]
        # The worker's head watch: the subshell of worker.sh that loops on `sleep 5` (bash, not Ray).
        watch = [
            p for p in worker_procs if p.name() == "bash" and any(c.name() == "sleep" for c in p.children())
        ]
        with _plain_worker(cluster) as plain:
            plain_pss = _pss(processes.session_members([plain]))
            worker_procs = _session(cluster, worker.node_id)  # measured at the same moment
        result = {
            "plain_worker_pss_mib": round(plain_pss, 1),
            "watchdog_pss_mib": round(_pss(watchdog), 1),
            "head_node_pss_mib": round(_pss(head_procs), 1),
            "worker_head_watch_pss_mib": round(_pss(watch), 1),
            "worker_node_pss_mib": round(_pss(worker_procs), 1),
        }
    result["watchdog_share_of_head"] = round(result["watchdog_pss_mib"] / result["head_node_pss_mib"], 3)
    result["target_mib"] = TARGET_MIB
    return result


if __name__ == "__main__":
    print(run())
