"""Per-task overhead of RayDogTaskRunner vs prefect_ray.RayTaskRunner, and time to the first task.

Both runners drive the same running RayDog cluster through the same Ray connection, so the only
difference measured is what RayDogTaskRunner adds per task (flushing the worker's logs to the API).
Rounds alternate between the runners; the ratio is of the medians, all from this one run.
Target: ratio <= 1.05.

Run: `python benchmarks/prefect_overhead.py [--tasks 500] [--rounds 3]` (needs the `prefect` extra).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_RATIO = 1.05


def _task_phase_seconds(runner: Any, tasks: int) -> float:
    """Seconds a flow on `runner` spends mapping `tasks` tiny tasks and collecting their results."""
    from prefect import flow, task

    @task
    def tiny(x: int) -> int:
        return x + 1

    @flow(task_runner=runner, log_prints=False)
    def overhead_flow(n: int) -> float:
        start = time.perf_counter()
        results = tiny.map(range(n)).result()
        elapsed = time.perf_counter() - start
        assert results == [x + 1 for x in range(n)]
        return elapsed

    return overhead_flow(tasks)


def _time_to_first_task() -> dict[str, float]:
    """From calling a RayDogTaskRunner flow (zero-config: builds head + 1 worker) to its first task running."""
    from prefect import flow, task

    from raydog_prefect import RayDogTaskRunner

    @task
    def started_at() -> float:
        return time.time()

    @flow(task_runner=RayDogTaskRunner())
    def first_task_flow() -> float:
        return started_at.submit().result()

    called = time.time()
    first = first_task_flow()
    return {"flow_start_to_first_task_s": first - called, "flow_total_s": time.time() - called}


def run(tasks: int = 500, rounds: int = 3) -> dict[str, Any]:
    """Measure both runners on one cluster; returns the numbers the table prints."""
    import ray
    from prefect.testing.utilities import prefect_test_harness
    from prefect_ray import RayTaskRunner

    from raydog_core import RayDogCluster
    from raydog_prefect import RayDogTaskRunner

    os.environ.setdefault("RAYDOG_HOME", tempfile.mkdtemp(prefix="raydog-bench-"))
    results: dict[str, Any] = {"tasks": tasks, "rounds": rounds}
    with prefect_test_harness(server_startup_timeout=180):
        cluster = RayDogCluster(cluster_name="bench")
        cluster.add_worker_pool(worker_pool_node_count=1, worker_node_resources={"num_cpus": 2})
        with cluster:
            cluster.build()
            ray.init(address=cluster.ray_address)  # both runners use this connection and leave it open
            try:
                _task_phase_seconds(RayTaskRunner(), 20)  # warm-up: worker processes, imports
                stock, raydog = [], []
                for _ in range(rounds):
                    stock.append(_task_phase_seconds(RayTaskRunner(), tasks))
                    raydog.append(_task_phase_seconds(RayDogTaskRunner(), tasks))
            finally:
                ray.shutdown()
        results["ray_task_runner_s"] = statistics.median(stock)
        results["raydog_task_runner_s"] = statistics.median(raydog)
        results["ray_task_runner_ms_per_task"] = 1000 * results["ray_task_runner_s"] / tasks
        results["raydog_task_runner_ms_per_task"] = 1000 * results["raydog_task_runner_s"] / tasks
        results["ratio"] = results["raydog_task_runner_s"] / results["ray_task_runner_s"]
        results["ratio_target"] = TARGET_RATIO
        results.update(_time_to_first_task())
    return results


def _print_table(results: dict[str, Any]) -> None:
    rows = [
        ("tasks per round", f"{results['tasks']}"),
        ("rounds (median taken)", f"{results['rounds']}"),
        ("RayTaskRunner, task phase", f"{results['ray_task_runner_s']:.2f} s"),
        ("RayDogTaskRunner, task phase", f"{results['raydog_task_runner_s']:.2f} s"),
        ("RayTaskRunner per task", f"{results['ray_task_runner_ms_per_task']:.2f} ms"),
        ("RayDogTaskRunner per task", f"{results['raydog_task_runner_ms_per_task']:.2f} ms"),
        ("ratio RayDog / prefect-ray", f"{results['ratio']:.3f} (target <= {results['ratio_target']})"),
        ("flow start -> first task (builds cluster)", f"{results['flow_start_to_first_task_s']:.1f} s"),
        ("whole zero-config flow incl. teardown", f"{results['flow_total_s']:.1f} s"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    _print_table(run(args.tasks, args.rounds))


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
