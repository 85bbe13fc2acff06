"""Test DAGs of the fault matrix, one per backend: the spec and the job come from the run conf, so one
DAG serves every fault. build -> submit -> shut_down (teardown), with the failure callback on every task.

The connections `raydog_fault_local` and `raydog_fault_yellowdog` are set by the tests.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG

from raydog_airflow.callbacks import shut_down_clusters_on_failure
from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator


def spec_from_conf(context: Any, jinja_env: Any) -> dict[str, Any]:
    """The spec the test put in the run conf (a callable template: rendered to the real dict)."""
    return dict(context["params"]["spec"])


def fault_dag(backend: str) -> DAG:
    conn_id = f"raydog_fault_{backend}"
    with DAG(
        dag_id=f"raydog_test_faults_{backend}",
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        params={"spec": {"cluster_name": "fault"}, "entrypoint": "echo ok"},
        default_args={"on_failure_callback": shut_down_clusters_on_failure},
    ) as dag:
        build = RayDogBuildOperator(task_id="build_cluster", spec=spec_from_conf, raydog_conn_id=conn_id)
        job = RayDogSubmitJobOperator(
            task_id="submit_job",
            cluster_state=build.output,
            entrypoint="{{ params.entrypoint }}",
            raydog_conn_id=conn_id,
        )
        shutdown = RayDogShutdownOperator(
            task_id="shut_down", cluster_state=build.output, raydog_conn_id=conn_id
        )
        build.as_setup() >> job >> shutdown.as_teardown(setups=build)
    return dag


dag_local = fault_dag("local")
dag_yellowdog = fault_dag("yellowdog")
