"""Fan work out over a Ray cluster that exists only while the flow runs.

    python examples/prefect/fan_out.py

RayDogTaskRunner() with no arguments builds a local cluster (a head and one worker, each its own
process group on this machine), runs the flow's tasks on it and shuts it down when the flow ends,
however it ends. Task logs show in the Prefect UI like any other task's.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from raydog_prefect import RayDogTaskRunner


@task
def score(item: int) -> float:
    get_run_logger().info("scoring item %d", item)
    return (item * 7919) % 1000 / 1000


@flow(task_runner=RayDogTaskRunner(), log_prints=True)
def fan_out(items: int = 20) -> float:
    scores = score.map(range(items)).result()
    best = max(scores)
    print(f"scored {len(scores)} items on Ray; best score {best:.3f}")
    return best


if __name__ == "__main__":
    fan_out()
