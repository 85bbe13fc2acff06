"""Three real Ray workloads (Ray Data, Ray Tune, Ray Train) that RayDog's examples run on a cluster.

This package is the examples' own code. It is not installed on the nodes: the runtime_env's
`working_dir` (see `cluster.RUNTIME_ENV`) uploads this directory's parent to the cluster through its
GCS, and Ray workers import it from there. `shipped_copy()` tells which copy a process runs, so each
workload can report that its remote code really came through the runtime_env.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

# Ray unpacks a runtime_env's working_dir under <session>/runtime_resources/working_dir_files/.
SHIPPED_MARK = "working_dir_files"


def shipped_copy() -> bool:
    """Whether this process imported the package from the copy the runtime_env shipped."""
    return SHIPPED_MARK in Path(__file__).resolve().parts


def run_as_job(
    run: Callable[..., dict[str, Any]], report: Callable[[dict[str, Any]], str], **arguments: Any
) -> None:
    """A workload as a Ray job's entrypoint (what the Airflow DAGs submit): it connects to the job's
    cluster, with the job's runtime_env, and prints its figures into the job's log."""
    import ray

    ray.init()
    print(report(run(**arguments)), flush=True)
