"""`raydog reap --run-finished airflow` asks Airflow's real metadata database whether a DAG run is over."""

from __future__ import annotations

from datetime import UTC, datetime

from dag_runs import load_dag

from raydog_airflow.labels import dag_run_labels
from raydog_airflow.run_status import airflow_run_finished
from raydog_core.backends.base import ClusterRecord


def record(labels: dict[str, str]) -> ClusterRecord:
    return ClusterRecord("c-1", "c", "local", labels, datetime.now(UTC), live_nodes=1, state="running")


def test_finished_only_when_airflow_says_so(airflow_db) -> None:
    dag_run = load_dag("raydog_reap_probe").test()
    assert str(dag_run.state) == "success"

    finished = airflow_run_finished()
    assert finished(record(dag_run_labels(dag_run.dag_id, dag_run.run_id)))
    assert not finished(record(dag_run_labels(dag_run.dag_id, "manual__not-a-run")))  # unknown: leave it
    assert not finished(record(dag_run_labels("no_such_dag", dag_run.run_id)))
    assert not finished(record({}))  # not an Airflow cluster
