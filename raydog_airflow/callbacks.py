"""A ready-made `on_failure_callback` that shuts down the clusters of the failed DAG run.

For DAGs without a `RayDogShutdownOperator` teardown (or as a second line of defence next to one):

```python
from raydog_airflow.callbacks import shut_down_clusters_on_failure

with DAG(..., on_failure_callback=shut_down_clusters_on_failure,
         default_args={"on_failure_callback": shut_down_clusters_on_failure}):
    ...
```

It finds the run's clusters in two ways: the state the RayDog tasks pushed to XCom (key
`raydog_cluster_state`), and the labels every RayDog build puts on its cluster (DAG id and a digest
of the run id), which also works where XCom cannot be read (a DAG-level callback runs in the DAG
processor). It is idempotent with the teardown: whichever runs second does nothing and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from contextlib import closing
from typing import Any

from raydog_airflow.cluster_xcom import STATE_XCOM_KEY, unique_states
from raydog_airflow.hooks.raydog import RayDogHook
from raydog_airflow.labels import dag_run_labels, lease_holder
from raydog_airflow.operators.cluster import (
    RayDogAddWorkerPoolOperator,
    RayDogBuildOperator,
    RayDogRemoveWorkerPoolOperator,
)
from raydog_core import operations, reaper, reuse
from raydog_core.errors import ShutdownError
from raydog_core.state import ClusterState

log = logging.getLogger(__name__)


class ShutDownClustersOnFailure:
    """Callable `on_failure_callback` (task- or DAG-level); `raydog_conn_id` defaults to the tasks' own."""

    def __init__(self, raydog_conn_id: str | None = None) -> None:
        self.raydog_conn_id = raydog_conn_id

    def __repr__(self) -> str:
        return f"ShutDownClustersOnFailure(raydog_conn_id={self.raydog_conn_id!r})"

    def __call__(self, context: Any) -> None:
        dag = context.get("dag") or context["task"].dag
        run_id = context.get("run_id") or context["dag_run"].run_id
        raydog_tasks = [task for task in dag.tasks if _changes_clusters(task)]
        states = _pushed_states(context.get("ti"), [task.task_id for task in raydog_tasks])
        failures: list[str] = []
        for conn_id in self._connection_ids(raydog_tasks):
            settings = RayDogHook(conn_id).get_conn()
            with closing(settings.create_backend()) as backend:
                for state in states:
                    if state.backend != settings.backend:
                        continue
                    if reuse.is_warm(state):  # shared with other runs: this run only lets go of it
                        settings.release_lease(state, lease_holder(dag.dag_id, run_id))
                        continue
                    try:
                        if operations.shut_down(state, backend):
                            log.warning(
                                "run failed: shut down cluster %s (%s)", state.cluster_name, state.cluster_id
                            )
                    except Exception as error:  # noqa: BLE001 - keep cleaning up the others, report at the end
                        failures.append(f"{state.cluster_name}: {error}")
                for result in reaper.shut_down_labelled(backend, dag_run_labels(dag.dag_id, run_id)):
                    log.warning("run failed: shut down cluster %s found by its labels", result.cluster.name)
                    failures.extend(result.failures)
        if failures:
            raise ShutdownError(failures)

    def _connection_ids(self, raydog_tasks: Iterable[Any]) -> list[str]:
        if self.raydog_conn_id:
            return [self.raydog_conn_id]
        ids = {getattr(task, "raydog_conn_id", None) or RayDogHook.default_conn_name for task in raydog_tasks}
        return sorted(ids) or [RayDogHook.default_conn_name]


shut_down_clusters_on_failure = ShutDownClustersOnFailure()


def _changes_clusters(task: Any) -> bool:
    return isinstance(
        task, (RayDogBuildOperator, RayDogAddWorkerPoolOperator, RayDogRemoveWorkerPoolOperator)
    )


def _pushed_states(ti: Any, task_ids: list[str]) -> list[ClusterState]:
    """The latest state each RayDog task pushed, one per cluster; empty where XCom cannot be read."""
    if ti is None or not task_ids:
        return []
    try:
        values = ti.xcom_pull(task_ids=task_ids, key=STATE_XCOM_KEY) or []
    except Exception as error:  # noqa: BLE001 - e.g. a DAG-level callback without XCom access: labels still work
        log.info("cluster state not readable from XCom here (%s); finding clusters by their labels", error)
        return []
    return unique_states(values)
