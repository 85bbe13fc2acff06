"""Test DAGs of the fault matrix for corrupt or stale cluster state, one per backend: the job and the
teardown get the state the run conf names instead of the build's output, while the build still builds
a cluster the failure callback must not lose.

`cluster_state` in the run conf is either a state dict (e.g. of a cluster already gone: stale) or
"jinja-xcom-pull": the build's state pulled through a Jinja string, which Airflow renders as a Python
repr, not JSON (the documented mistake; a corrupt state).
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG

from raydog_airflow.callbacks import shut_down_clusters_on_failure
from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator, RayDogSubmitJobOperator

JINJA_XCOM_PULL = "{{ ti.xcom_pull(task_ids='build_cluster') }}"


def spec_from_conf(context: Any, jinja_env: Any) -> dict[str, Any]:
    return dict(context["params"]["spec"])


def given_state(context: Any, jinja_env: Any) -> Any:
    given = context["params"]["cluster_state"]
    if given == "jinja-xcom-pull":
        return jinja_env.from_string(JINJA_XCOM_PULL).render(**context)
    return given


def given_state_dag(backend: str) -> DAG:
    conn_id = f"raydog_fault_{backend}"
    with DAG(
        dag_id=f"raydog_test_given_state_{backend}",
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        params={"spec": {"cluster_name": "given"}, "cluster_state": "jinja-xcom-pull"},
        default_args={"on_failure_callback": shut_down_clusters_on_failure},
    ) as dag:
        # No workers, and a stand-in head that runs no Ray: nothing to wait for once the head listens.
        build = RayDogBuildOperator(
            task_id="build_cluster", spec=spec_from_conf, raydog_conn_id=conn_id, wait_for_workers=False
        )
        job = RayDogSubmitJobOperator(
            task_id="submit_job", cluster_state=given_state, entrypoint="echo never", raydog_conn_id=conn_id
        )
        shutdown = RayDogShutdownOperator(
            task_id="shut_down", cluster_state=given_state, raydog_conn_id=conn_id
        )
        build >> job >> shutdown.as_teardown(setups=build)
    return dag


dag_local = given_state_dag("local")
dag_yellowdog = given_state_dag("yellowdog")
