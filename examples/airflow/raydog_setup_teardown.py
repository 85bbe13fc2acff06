"""A Ray cluster as the setup and teardown of a DAG run, on the local backend (no account needed).

build (setup) >> add_pool >> submit >> shutdown (teardown): the teardown runs even when the job or the
build fails, and the DAG run still ends failed. Trigger with {"fail_job": true} to see that.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from raydog_airflow.operators import (
    RayDogAddWorkerPoolOperator,
    RayDogBuildOperator,
    RayDogShutdownOperator,
    RayDogSubmitJobOperator,
)

SMALL_NODE = {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80}

# Runs on the head with the head's PATH (locally: this Python environment's bin first).
JOB = """python - <<'PY'
import ray
ray.init()

@ray.remote
def square(x):
    return x * x

print("squares:", ray.get([square.remote(i) for i in range(8)]))
print("nodes in the cluster:", len(ray.nodes()))
if {{ params.fail_job }}:
    raise SystemExit("failing on purpose")
PY"""

with DAG(
    dag_id="raydog_setup_teardown",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={"fail_job": Param(False, type="boolean")},
    tags=["raydog"],
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        spec={
            "cluster_name": "airflow-demo",
            "head_node_resources": SMALL_NODE,
            "worker_pools": [
                {
                    "worker_pool_node_count": 1,
                    "worker_pool_internal_name": "base",
                    "worker_node_resources": SMALL_NODE,
                }
            ],
        },
    )
    add_pool = RayDogAddWorkerPoolOperator(
        task_id="add_pool",
        cluster_state=build.output,
        worker_pool={"worker_node_resources": SMALL_NODE},
        worker_pool_node_count=1,
        worker_pool_internal_name="extra",
    )
    submit = RayDogSubmitJobOperator(task_id="submit_job", cluster_state=add_pool.output, entrypoint=JOB)
    shutdown = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output)

    build.as_setup() >> add_pool >> submit >> shutdown.as_teardown(setups=build)
