"""Test DAG: build and job wait in the trigger (dag.test() runs triggers in line)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator

NODE = {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80}

with DAG(
    dag_id="raydog_test_deferrable", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        spec={
            "cluster_name": "deferred",
            "head_node_resources": NODE,
            "worker_pools": [{"worker_pool_node_count": 1, "worker_node_resources": NODE}],
        },
        deferrable=True,
        poll_interval=0.5,
    )
    job = RayDogSubmitJobOperator(
        task_id="submit_job",
        cluster_state=build.output,
        entrypoint="python -c \"import ray; ray.init(); print('deferred job sees', len(ray.nodes()), 'nodes')\"",
        deferrable=True,
        poll_interval=0.5,
    )
    shutdown = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output)
    build.as_setup() >> job >> shutdown.as_teardown(setups=build)
