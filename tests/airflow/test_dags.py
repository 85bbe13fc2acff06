"""End-to-end: DAGs under real Airflow (dag.test(), real metadata database) with real local Ray clusters.

Every test checks that nothing of any cluster is left alive afterwards.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from dag_runs import live, load_dag, task_states, xcom_rows, xcom_value

from raydog_airflow.cluster_xcom import STATE_XCOM_KEY
from raydog_airflow.labels import dag_run_labels
from raydog_core import auth
from raydog_core.cluster import RayDogCluster

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_tokens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Ray token generated during the test (real tokens, recorded to look for leaks)."""
    tokens: list[str] = []
    real_new_token = auth.new_token

    def recording_new_token() -> str:
        tokens.append(real_new_token())
        return tokens[-1]

    monkeypatch.setattr(auth, "new_token", recording_new_token)
    return tokens


def test_setup_teardown_success(
    airflow_db: Path,
    raydog_home: Path,
    ray_tokens: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # The connection comes from an AIRFLOW_CONN_... variable, in Airflow's JSON form.
    connection = {"conn_type": "raydog", "extra": {"backend": "local", "namespace": "from-env-conn"}}
    monkeypatch.setenv("AIRFLOW_CONN_RAYDOG_DEFAULT", json.dumps(connection))
    dag_run = load_dag("raydog_setup_teardown").test()
    states = task_states(dag_run)
    assert str(dag_run.state) == "success", states
    assert set(states.values()) == {"success"}, states
    built = xcom_value(dag_run, "build_cluster")
    assert built["cluster_namespace"] == "from-env-conn"
    assert built["labels"] == dag_run_labels(dag_run.dag_id, dag_run.run_id)
    grown = xcom_value(dag_run, "add_pool")
    assert [p["internal_name"] for p in grown["pools"] if p["role"] == "worker"] == ["base", "extra"]
    job_id = xcom_value(dag_run, "submit_job")
    assert job_id.startswith("raydog-raydog_setup_teardown-submit_job-")
    assert xcom_value(dag_run, "submit_job", "_link_RayDashboardLink").endswith(f"/#/jobs/{job_id}")
    output = capfd.readouterr()
    assert "squares: [0, 1, 4, 9, 16, 25, 36, 49]" in output.out + output.err  # the job's log, streamed
    assert "nodes in the cluster: 3" in output.out + output.err
    _assert_no_secret(ray_tokens, json.dumps([row[2] for row in xcom_rows(dag_run)]), output.out + output.err)
    assert live(raydog_home) == []


def test_failing_job_teardown_runs(airflow_db: Path, raydog_home: Path) -> None:
    dag_run = load_dag("raydog_setup_teardown").test(run_conf={"fail_job": True})
    states = task_states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states == {
        "build_cluster": "success",
        "add_pool": "success",
        "submit_job": "failed",
        "shut_down": "success",
    }
    assert live(raydog_home) == []


@pytest.mark.fault_case("airflow", "local", "worker_script_fails")
def test_failing_build_partial_state_cleaned_up(airflow_db: Path, raydog_home: Path, fault_leaks) -> None:
    """A worker's script exits after the real Ray head is up: the build fails and cleans up; the
    teardown runs on the partial state pushed before the slow part and finds nothing left."""
    dag_run = load_dag("raydog_test_failing_build").test()
    states = task_states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states == {"build_cluster": "failed", "submit_job": "upstream_failed", "shut_down": "success"}
    partial = xcom_value(dag_run, "build_cluster", STATE_XCOM_KEY)
    assert partial["phase"] != "running" and partial["head"]["node_id"]  # pushed before the slow part
    assert xcom_value(dag_run, "build_cluster") is None
    assert xcom_value(dag_run, "shut_down") == [partial["cluster_id"]]
    assert live(raydog_home) == []
    fault_leaks.assert_none()


def test_deferrable_build_and_job(
    airflow_db: Path, raydog_home: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_run = load_dag("raydog_test_deferrable").test()
    states = task_states(dag_run)
    assert str(dag_run.state) == "success", states
    built = xcom_value(dag_run, "build_cluster")
    assert built["phase"] == "running" and len(built["pools"]) == 2
    output = capfd.readouterr()
    assert "deferred job sees 2 nodes" in output.out + output.err
    assert xcom_value(dag_run, "submit_job").startswith("raydog-raydog_test_deferrable-submit_job-")
    assert live(raydog_home) == []


@pytest.mark.fault_case("airflow", "local", "client_sigterm")
def test_killed_task_failure_callback_leaves_nothing(
    airflow_db: Path, raydog_home: Path, caplog: pytest.LogCaptureFixture, fault_leaks
) -> None:
    """SIGTERM of the Airflow task process while its job runs: the task fails, its failure callback
    shuts the cluster down; the DAG-level callback, second, has nothing to do."""
    caplog.set_level(logging.INFO)
    dag = load_dag("raydog_test_killed")
    dag_run = dag.test(run_conf={"airflow_pid": os.getpid()})
    states = task_states(dag_run)
    assert str(dag_run.state) == "failed"
    assert states == {"build_cluster": "success", "submit_job": "failed"}
    assert live(raydog_home) == []
    assert "shut down cluster killed" in caplog.text
    # The DAG-level callback (as the DAG processor calls it) runs second: it does nothing and says so.
    caplog.clear()
    dag.on_failure_callback = load_dag("raydog_failure_callback").on_failure_callback
    dag.on_failure_callback({"dag": dag, "run_id": dag_run.run_id, "reason": "task_failure"})
    assert "nothing to shut down" in caplog.text
    fault_leaks.assert_none()


def test_dag_level_callback_finds_cluster_by_labels(
    airflow_db: Path, raydog_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The DAG processor cannot read XCom: the labels the build put on the cluster are enough."""
    caplog.set_level(logging.INFO)
    dag = load_dag("raydog_failure_callback")
    run_id = "manual__callback-by-labels"
    cluster = RayDogCluster(
        cluster_name="orphan",
        cluster_labels=dag_run_labels(dag.dag_id, run_id),
        head_node_resources={"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80},
    )
    cluster.build(wait_for_head=False)  # launched, not waited for: the callback must stop it anyway
    assert live(raydog_home)
    dag.on_failure_callback({"dag": dag, "run_id": run_id, "reason": "task_failure"})
    assert live(raydog_home) == []
    assert "found by its labels" in caplog.text


def _assert_no_secret(tokens: list[str], *texts: str) -> None:
    assert tokens, "no Ray token was generated: the check would prove nothing"
    for token in tokens:
        for text in texts:
            assert token not in text
