"""Benchmark DAG: a Ray job on a cluster built and shut down by RayDog's operators (local backend).

The anchor, `raydog_bench_plain`, does the same Ray work with BashOperators; `benchmarks.airflow_overhead`
runs both and passes the job's entrypoint in `params.entrypoint`.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator

NODE = {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80}  # the anchor's nodes are the same

with DAG(
    dag_id="raydog_bench_raydog",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    params={"entrypoint": Param("python -c 'print(1)'", type="string")},
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        spec={
            "cluster_name": "bench-airflow",
            "ray_auth_mode": "disabled",  # as the anchor: the same Ray work, no token on either side
            "head_node_resources": NODE,
            "worker_pools": [{"worker_pool_node_count": 1, "worker_node_resources": NODE}],
        },
    )
    job = RayDogSubmitJobOperator(
        task_id="submit_job", cluster_state=build.output, entrypoint="{{ params.entrypoint }}"
    )
    shutdown = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output)
    build.as_setup() >> job >> shutdown.as_teardown(setups=build)
