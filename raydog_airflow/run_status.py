"""Has the Airflow DAG run that owns a cluster finished? Asked of Airflow's metadata database.

Plugged into `raydog reap --run-finished airflow` (through the `raydog.run_status` entry point) on a machine with Airflow configured (AIRFLOW_HOME or
AIRFLOW__DATABASE__SQL_ALCHEMY_CONN): a cluster whose DAG run succeeded or failed has outlived its
purpose. Cluster labels carry the DAG id and a digest of the run id (run ids hold characters cloud
tags refuse), so the DAG's runs are listed and matched by digest. A run that cannot be found is
never called finished: the reaper only acts on certainty.
"""

from __future__ import annotations

from raydog_airflow.labels import DAG_LABEL, RUN_LABEL, run_digest
from raydog_core.backends.base import ClusterRecord
from raydog_core.reaper import RunFinished

FINAL_STATES = frozenset({"success", "failed"})


def airflow_run_finished(api_url: str | None = None) -> RunFinished:
    """A check that looks up a cluster's DAG run (by its labels) in Airflow's metadata database."""
    if api_url:
        raise ValueError("--run-finished airflow reads Airflow's metadata database: drop --api-url")
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session

    def finished(record: ClusterRecord) -> bool:
        dag_id, digest = record.labels.get(DAG_LABEL), record.labels.get(RUN_LABEL)
        if not dag_id or not digest:
            return False
        with create_session() as session:
            runs = session.query(DagRun.run_id, DagRun.state).filter(DagRun.dag_id == dag_id).all()
        states = {str(state) for run_id, state in runs if run_digest(dag_id, run_id) == digest}
        return bool(states) and states <= FINAL_STATES

    return finished
