"""Test DAG: no teardown task; the job task is killed (SIGTERM) mid-run; the failure callback cleans up.

The job itself sends SIGTERM to the Airflow task process (its pid comes in the run conf), the way a
worker shutting down or a user marking the task failed would.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from raydog_airflow.callbacks import shut_down_clusters_on_failure
from raydog_airflow.operators import RayDogBuildOperator, RayDogSubmitJobOperator

with DAG(
    dag_id="raydog_test_killed",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    params={"airflow_pid": 0},
    default_args={"on_failure_callback": shut_down_clusters_on_failure},
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        spec={
            "cluster_name": "killed",
            "head_node_resources": {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80},
        },
    )
    job = RayDogSubmitJobOperator(
        task_id="submit_job",
        cluster_state=build.output,
        entrypoint="echo 'job running'; sleep 2; kill -TERM {{ params.airflow_pid }}; sleep 300",
    )
    build >> job
