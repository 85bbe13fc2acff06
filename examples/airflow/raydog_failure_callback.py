"""No teardown task: a failure callback shuts the cluster down when anything in the run fails.

`shut_down_clusters_on_failure` finds the run's clusters in XCom (and by their labels) and shuts them
down; set it on the tasks (default_args) and on the DAG. The last task shuts the cluster down on
success; if the callback already did, it says so and does nothing.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from raydog_airflow.callbacks import shut_down_clusters_on_failure
from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator

with DAG(
    dag_id="raydog_failure_callback",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    params={
        "entrypoint": Param(
            'python -c "import ray; ray.init(); print(ray.cluster_resources())"', type="string"
        )
    },
    default_args={"on_failure_callback": shut_down_clusters_on_failure},
    on_failure_callback=shut_down_clusters_on_failure,
    tags=["raydog"],
) as dag:
    build = RayDogBuildOperator(
        task_id="build_cluster",
        spec={"cluster_name": "callback-demo", "head_node_resources": {"num_cpus": 1, "memory_mb": 512}},
    )
    job = RayDogSubmitJobOperator(
        task_id="submit_job", cluster_state=build.output, entrypoint="{{ params.entrypoint }}"
    )
    # An ordinary last step on success (not a teardown): failures are the callback's business.
    done = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output, teardown=False)

    build >> job >> done
