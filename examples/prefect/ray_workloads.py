"""Ray Data, Ray Tune and Ray Train from Prefect flows, on one warm RayDog cluster.

    python examples/prefect/ray_workloads.py [data] [tune] [train]    (default: all three)

- `ray_data_pipeline`: a batch transform (`map_batches`) over a generated dataset;
- `ray_tune_sweep`: a small grid sweep over a closed-form objective;
- `ray_train_run`: data-parallel training on CPU with two workers, on numpy.

Each flow's own process is the Ray driver: `flow_run_cluster()` builds (or attaches to) the cluster and
connects Ray with the spec's `runtime_env`, which ships `examples/workloads` to the nodes, so Ray's
workers import the workload from there. The flows ask for the same cluster and reuse key: run one after
another, the second and third attach to the first one's cluster while it is warm. The figures are
logged with the run's logger, not printed: Ray Data replaces `print` in the driver.
"""

from __future__ import annotations

import sys
from pathlib import Path

WORKLOADS = str(Path(__file__).resolve().parents[1] / "workloads")
if WORKLOADS not in sys.path:
    sys.path.insert(0, WORKLOADS)  # this process imports the package from here; Ray nodes get it shipped

from prefect import flow, get_run_logger  # noqa: E402
from raydog_workloads import data_pipeline, train_run, tune_sweep  # noqa: E402
from raydog_workloads.cluster import CLUSTER, RUNTIME_ENV  # noqa: E402

from raydog_core import ClusterSpec  # noqa: E402
from raydog_prefect import RayDogTaskRunner, flow_run_cluster  # noqa: E402

SPEC = ClusterSpec(**CLUSTER, runtime_env=RUNTIME_ENV)


@flow(task_runner=RayDogTaskRunner(cluster=SPEC))
def ray_data_pipeline(rows: int = 10_000) -> dict:
    flow_run_cluster()  # the workload runs from the flow itself: connect the run's Ray first
    figures = data_pipeline.run(rows)
    get_run_logger().info(data_pipeline.report(figures))
    return figures


@flow(task_runner=RayDogTaskRunner(cluster=SPEC))
def ray_tune_sweep() -> dict:
    flow_run_cluster()
    figures = tune_sweep.run()
    get_run_logger().info(tune_sweep.report(figures))
    return figures


@flow(task_runner=RayDogTaskRunner(cluster=SPEC))
def ray_train_run() -> dict:
    flow_run_cluster()
    figures = train_run.run()
    get_run_logger().info(train_run.report(figures))
    return figures


FLOWS = {"data": ray_data_pipeline, "tune": ray_tune_sweep, "train": ray_train_run}

if __name__ == "__main__":
    for chosen in sys.argv[1:] or list(FLOWS):
        FLOWS[chosen]()
