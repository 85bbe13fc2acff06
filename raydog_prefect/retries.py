"""Clusters kept alive between the attempts of one flow run, so retries reuse one cluster.

Prefect enters a fresh copy of the task runner for every attempt and tells it nothing about whether
another attempt follows. The runner parks its cluster here when the flow run is not finished, and the
next attempt in this process picks it up by flow-run id. Whatever is still parked when the process
exits (the run was suspended, the process was told to stop between attempts) is shut down at exit; a
process killed outright is covered by the crash hooks, the reaper and `cluster_lifetime`.
"""

from __future__ import annotations

import atexit
import logging
import threading

from raydog_core.cluster import RayDogCluster

log = logging.getLogger("raydog")

_lock = threading.Lock()
_parked: dict[str, RayDogCluster] = {}


def park(flow_run_id: str, cluster: RayDogCluster) -> None:
    """Keep `cluster` for the next attempt of this flow run in this process."""
    with _lock:
        previous = _parked.pop(flow_run_id, None)
        _parked[flow_run_id] = cluster
    if previous is not None and previous is not cluster:
        _shut_down(previous)


def take(flow_run_id: str) -> RayDogCluster | None:
    """The cluster an earlier attempt of this flow run parked, if any (it is no longer parked)."""
    with _lock:
        return _parked.pop(flow_run_id, None)


def parked_flow_runs() -> list[str]:
    with _lock:
        return sorted(_parked)


@atexit.register
def shut_down_parked() -> None:
    """Shut down every parked cluster; runs at interpreter exit."""
    with _lock:
        clusters = list(_parked.values())
        _parked.clear()
    for cluster in clusters:
        _shut_down(cluster)


def _shut_down(cluster: RayDogCluster) -> None:
    try:
        cluster.shut_down()
    except Exception:
        log.exception("shutting down parked cluster %s failed", cluster.spec.cluster_name)
