"""Warm reuse, side by side in one run: attaching to a warm local cluster against building it cold;
ten back-to-back zero-config Prefect flow runs with a reuse key against ten without; four parallel
flow runs with one key (how many clusters they build); warm runs a few seconds apart, with the head's
ready workers against without.

Targets: attach under 1 s; ten warm flow runs at least 5x faster in total than ten cold ones; four
parallel runs build one cluster.

Run: `python -m benchmarks warm_reuse` (needs the `prefect` extra).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

ATTACH_TARGET_S = 1.0
FLOW_SPEED_UP_TARGET = 5.0
FLOW_RUNS = 10
PARALLEL_RUNS = 4
SPACED_RUNS = FLOW_RUNS
SPACED_GAP_S = 5.0
IDLE_TTL = timedelta(minutes=5)

PARALLEL_FLOW = """
from prefect import flow, task
from raydog_prefect import RayDogTaskRunner, flow_run_cluster

@task
def one() -> int:
    return 1

@flow(task_runner=RayDogTaskRunner(reuse="bench-parallel"))
def parallel_run() -> str:
    one.submit().result()
    return flow_run_cluster().cluster_id

print("cluster", parallel_run(), flush=True)
"""


def _attach_against_cold(attaches: int = 5) -> dict[str, Any]:
    from raydog_core import RayDogCluster
    from raydog_core.spec import ClusterSpec

    spec = ClusterSpec(
        cluster_name="bench-warm",
        reuse_key="bench",
        idle_ttl=IDLE_TTL,
        worker_pools=[{"worker_pool_node_count": 1}],
    )
    started = time.perf_counter()
    with RayDogCluster(spec=spec) as first:
        first.build()
        cold_s = time.perf_counter() - started
    warm_s = []
    for _ in range(attaches):
        started = time.perf_counter()
        with RayDogCluster(spec=spec) as run:
            run.build()
            warm_s.append(time.perf_counter() - started)
            assert run.attached and run.cluster_id == first.cluster_id
    RayDogCluster.from_state(first.state).shut_down()
    attach_s = statistics.median(warm_s)
    return {
        "cold_build_s": round(cold_s, 2),
        "attach_s": round(attach_s, 3),
        "attach_ratio": round(attach_s / cold_s, 4),
        "attach_target_s": ATTACH_TARGET_S,
    }


def _flow_runs(reuse: str | None, runs: int = FLOW_RUNS, gap_s: float = 0.0, **cluster: Any) -> list[float]:
    """Seconds of each of `runs` flow runs, one task each, `gap_s` apart; `cluster`: Block fields
    (none: the zero-config Block)."""
    from prefect import flow, task

    from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner

    @task
    def one() -> int:
        return 1

    config = RayDogClusterConfig(**cluster) if cluster else None

    @flow(task_runner=RayDogTaskRunner(cluster=config, reuse=reuse))
    def scheduled_run() -> int:
        return one.submit().result()

    seconds = []
    for run in range(runs):
        if run:
            time.sleep(gap_s)
        started = time.perf_counter()
        assert scheduled_run() == 1
        seconds.append(time.perf_counter() - started)
    return seconds


def _spaced_runs(cold: list[float]) -> dict[str, Any]:
    """Warm runs SPACED_GAP_S apart, as scheduled runs come: with the head's ready workers (the default)
    against without (`warm_workers=0`, nothing preloaded); the median of the attached runs, and the ten
    runs' total (gaps not counted) against the ten cold ones'."""
    ready = _flow_runs("bench-ready", SPACED_RUNS, SPACED_GAP_S)
    _shut_down_warm()
    plain = _flow_runs(
        "bench-plain", SPACED_RUNS, SPACED_GAP_S, warm_workers=0, worker_preload_modules=["json"]
    )
    _shut_down_warm()
    return {
        "spaced_gap_s": SPACED_GAP_S,
        "spaced_flow_runs_s": round(sum(ready), 1),
        "spaced_flow_speed_up": round(sum(cold) / sum(ready), 2),
        "spaced_run_median_ready_workers_s": round(statistics.median(ready[1:]), 2),
        "spaced_run_median_without_s": round(statistics.median(plain[1:]), 2),
        "spaced_runs_ready_workers_s": [round(s, 2) for s in ready[1:]],
        "spaced_runs_without_s": [round(s, 2) for s in plain[1:]],
    }


def _parallel_runs() -> int:
    """How many clusters PARALLEL_RUNS flow processes started at once with one reuse key build."""
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", PARALLEL_FLOW], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(PARALLEL_RUNS)
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    if any(run.returncode for run in runs):
        raise RuntimeError("a parallel flow run failed:\n" + "\n".join(outputs))
    return len(
        {line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("cluster ")}
    )


def _shut_down_warm() -> None:
    """Every warm cluster the flow runs left (they would end by themselves after IDLE_TTL)."""
    from raydog_core.backends import create_backend
    from raydog_core.reaper import Selector, reap
    from raydog_core.reuse import REUSE_LABEL

    backend = create_backend("local")
    for record in backend.list_clusters():
        if REUSE_LABEL in record.labels and record.state == "running":
            reap(backend, Selector(name=record.name))


def run() -> dict[str, Any]:
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    results = _attach_against_cold()
    with prefect_test_harness(server_startup_timeout=180):
        os.environ["PREFECT_API_URL"] = str(PREFECT_API_URL.value())  # for the parallel flow processes
        try:
            cold = _flow_runs(reuse=None)
            warm = _flow_runs(reuse="bench-flows")
            _shut_down_warm()
            clusters = _parallel_runs()
            _shut_down_warm()
            spaced = _spaced_runs(cold)
        finally:
            os.environ.pop("PREFECT_API_URL", None)
    results.update(
        {
            "flow_runs": FLOW_RUNS,
            "cold_flow_runs_s": round(sum(cold), 1),
            "warm_flow_runs_s": round(sum(warm), 1),
            "flow_speed_up": round(sum(cold) / sum(warm), 2),
            "cold_flow_run_median_s": round(statistics.median(cold), 2),
            "warm_first_flow_run_s": round(warm[0], 2),
            "warm_flow_run_median_s": round(statistics.median(warm[1:]), 2),
            "flow_speed_up_target": FLOW_SPEED_UP_TARGET,
            "parallel_runs": PARALLEL_RUNS,
            "parallel_clusters_built": clusters,
            **spaced,
        }
    )
    return results


if __name__ == "__main__":
    print(run())
