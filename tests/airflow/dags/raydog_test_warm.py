"""Test DAG for warm reuse: its runs share one warm cluster (reuse_key); the teardown leaves it."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from raydog_airflow.callbacks import shut_down_clusters_on_failure
from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator

with DAG(
    dag_id="raydog_test_warm",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    default_args={"on_failure_callback": shut_down_clusters_on_failure},
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        spec={
            "cluster_name": "airflow-warm",
            "reuse_key": "hourly",
            "idle_ttl": "PT5M",
            "head_node_resources": {"num_cpus": 2},
        },
        deferrable=True,  # a warm build attaches or builds in place; the flag must not break it
    )
    job = RayDogSubmitJobOperator(
        task_id="submit_job",
        cluster_state=build.output,
        entrypoint="python -c \"import ray; ray.init(); print('warm job ran on', ray.get_runtime_context().gcs_address)\"",
    )
    shutdown = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output)
    build >> job >> shutdown.as_teardown(setups=build)
