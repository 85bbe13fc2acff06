"""Warm reuse in Airflow: DAG runs with one reuse_key share a cluster; the teardown releases the run's
lease instead of shutting the shared cluster down; the cluster carries no run's labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from dag_runs import live, load_dag, task_states, xcom_value

from raydog_airflow.labels import RUN_LABEL
from raydog_core import RayDogCluster, reuse
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.reaper import shut_down_labelled

pytestmark = pytest.mark.slow


def test_dag_runs_with_one_reuse_key_share_a_warm_cluster(airflow_db: Path, raydog_home: Path) -> None:
    dag = load_dag("raydog_test_warm")
    runs = [dag.test(), dag.test()]
    for run in runs:
        assert str(run.state) == "success", task_states(run)
    first, second = (xcom_value(run, "build_cluster") for run in runs)
    assert first["cluster_id"] == second["cluster_id"], "the second DAG run built its own cluster"
    assert RUN_LABEL not in first["labels"] and reuse.REUSE_LABEL in first["labels"]
    assert xcom_value(runs[1], "shut_down") == [first["cluster_id"]]

    backend = LocalBackend(raydog_home / "local")
    (record,) = [r for r in backend.list_clusters() if r.cluster_id == first["cluster_id"]]
    assert record.state == "running", "the teardown shut the shared cluster down"
    view = RayDogCluster.from_state(first).lease_view()
    assert view["leases"] == [], view  # each run's teardown released its lease

    assert [
        r.cluster.cluster_id
        for r in shut_down_labelled(backend, {reuse.REUSE_LABEL: record.labels[reuse.REUSE_LABEL]})
    ] == [first["cluster_id"]]
    assert live(raydog_home) == []
