"""The Ray workload examples (Ray Data, Tune, Train) run for real as Airflow DAGs, each a Ray job.

The three DAGs share one warm local cluster (same spec, same reuse key): the first DAG run builds it,
the others attach, and each teardown only releases its run's lease. Each test checks the figures its
job prints into the task log and that the job ran the code its runtime_env shipped; the last one that
one cluster served all three and that nothing is left once it is shut down.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from dag_runs import live, load_dag, task_states, xcom_value

from raydog_core.backends.local.backend import LocalBackend
from raydog_core.testing.warm import shut_down_warm, warm_clusters

pytestmark = pytest.mark.slow
REUSE_KEY = "ray-workloads"  # examples/workloads/raydog_workloads/cluster.py


@pytest.fixture(scope="module")
def shared_cluster(airflow_db: Path, raydog_home: Path) -> Iterator[LocalBackend]:
    """The warm cluster the DAGs share (their workload package is beside the DAGs' folder: conftest),
    shut down after the module whatever happened."""
    backend = LocalBackend(raydog_home / "local")
    yield backend
    shut_down_warm(backend, REUSE_KEY)


def run_dag(dag_id: str, capfd: pytest.CaptureFixture[str]) -> str:
    """Run the example DAG; the output of its run (the job's log streams into its task's log)."""
    capfd.readouterr()
    dag_run = load_dag(dag_id, file="raydog_ray_workloads").test()
    states = task_states(dag_run)
    assert str(dag_run.state) == "success" and set(states.values()) == {"success"}, states
    job_task = next(task for task in states if task.endswith("_job"))
    assert xcom_value(dag_run, job_task).startswith(f"raydog-{dag_id}-{job_task}-")
    output = capfd.readouterr()
    return output.out + output.err


def test_ray_data_dag(shared_cluster: LocalBackend, capfd: pytest.CaptureFixture[str]) -> None:
    output = run_dag("raydog_ray_data", capfd)
    assert "Ray Data: 10000 rows; sum of id = 49995000 (n(n-1)/2 = 49995000)" in output, output[-3000:]
    assert "sum of id^2 = 333283335000 ((n-1)n(2n-1)/6 = 333283335000)" in output
    assert "10000 rows transformed by code shipped in the runtime_env" in output


def test_ray_tune_dag(shared_cluster: LocalBackend, capfd: pytest.CaptureFixture[str]) -> None:
    output = run_dag("raydog_ray_tune", capfd)
    assert "Ray Tune: 4 trials, 0 errors; best config x=3, y=-1 with score 0.2500" in output, output[-3000:]
    assert "4 trials ran code shipped in the runtime_env" in output


def test_ray_train_dag(shared_cluster: LocalBackend, capfd: pytest.CaptureFixture[str]) -> None:
    output = run_dag("raydog_ray_train", capfd)
    assert "Ray Train: 2 workers, 60 epochs; final loss" in output, output[-3000:]
    assert "learned w = [2.0, -3.0], b = 0.5 (the data was made with w = [2.0, -3.0], b = 0.5)" in output
    assert "workers ran code shipped in the runtime_env: True" in output


def test_one_warm_cluster_served_every_dag_and_nothing_is_left(
    shared_cluster: LocalBackend, raydog_home: Path
) -> None:
    clusters = warm_clusters(shared_cluster, REUSE_KEY)
    assert len(clusters) == 1, clusters  # the second and third DAG runs attached to the first's cluster
    shut_down_warm(shared_cluster, REUSE_KEY)
    assert live(raydog_home) == []
