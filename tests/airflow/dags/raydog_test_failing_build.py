"""Test DAG: the build fails half-way (a worker's script exits after the head is up)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator

BROKEN_WORKER = "#!/bin/bash\necho 'this worker fails on purpose'\nexit 3\n"

with DAG(
    dag_id="raydog_test_failing_build", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        spec={
            "cluster_name": "broken",
            "head_node_resources": {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80},
            "worker_pools": [{"worker_pool_node_count": 1, "worker_node_task_script": BROKEN_WORKER}],
        },
    )
    job = RayDogSubmitJobOperator(
        task_id="submit_job", cluster_state=build.output, entrypoint="echo never runs"
    )
    shutdown = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output)
    build.as_setup() >> job >> shutdown.as_teardown(setups=build)
