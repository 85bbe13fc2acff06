"""Test DAG: the YellowDog path, through the emulator (the real yellowdog-sdk against a local platform)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, task

from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator
from raydog_core.testing.emulator import DEFAULT_TEMPLATES

NODE = {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80}
# The job also asks for work no node can run, for a while: the task log says why it waits.
JOB = """python - <<'PY'
import time
import ray
ray.init()
print("yellowdog job sees", len(ray.nodes()), "nodes")
stuck = ray.remote(lambda: None).options(num_cpus=64).remote()
time.sleep(10)
ray.cancel(stuck, force=True)
PY"""

with DAG(
    dag_id="raydog_test_yellowdog", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        raydog_conn_id="raydog_yd",
        spec={
            "cluster_name": "yd-airflow",
            "max_node_hours": 10,  # a spend cap: each task that uses the cluster reports on it
            "head_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
            "head_node_resources": NODE,
            "worker_pools": [
                {
                    "worker_pool_node_count": 1,
                    "worker_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
                    "worker_node_resources": NODE,
                }
            ],
        },
    )

    @task(task_id="time_passes")
    def time_passes() -> None:
        """The test's own step between build and job (dag_hooks: it moves the emulator's clock)."""
        from dag_hooks import run_between_build_and_job

        run_between_build_and_job()

    job = RayDogSubmitJobOperator(
        task_id="submit_job",
        raydog_conn_id="raydog_yd",
        cluster_state=build.output,
        entrypoint=JOB,
    )
    shutdown = RayDogShutdownOperator(
        task_id="shut_down", raydog_conn_id="raydog_yd", cluster_state=build.output
    )
    build.as_setup() >> time_passes() >> job >> shutdown.as_teardown(setups=build)
