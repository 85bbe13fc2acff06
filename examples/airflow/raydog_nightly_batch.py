"""A scheduled batch: every night at 02:00 UTC a fresh cluster runs the job and is shut down again.

Deferrable: while the cluster starts and the job runs, the waiting happens in the triggerer, so no
worker slot is held. Start a triggerer (`airflow triggerer`) next to the scheduler.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator

with DAG(
    dag_id="raydog_nightly_batch",
    schedule="0 2 * * *",
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["raydog"],
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        cluster_name="nightly",
        spec={
            "head_node_resources": {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80},
            "worker_pools": [
                {
                    "worker_pool_node_count": 2,
                    "worker_node_resources": {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80},
                }
            ],
            "cluster_lifetime": 4 * 3600,  # seconds: nodes stop by themselves even if everything else fails
        },
        deferrable=True,
    )
    batch = RayDogSubmitJobOperator(
        task_id="nightly_job",
        cluster_state=build.output,
        # The logical date, templated into the job: each night's run processes its own day.
        entrypoint="python -c \"import ray; ray.init(); print('processing {{ ds }} on', ray.cluster_resources())\"",
        runtime_env={"env_vars": {"BATCH_DATE": "{{ ds }}"}},
        deferrable=True,
    )
    shutdown = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output)

    build.as_setup() >> batch >> shutdown.as_teardown(setups=build)
