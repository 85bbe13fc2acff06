"""The labels that tie a cluster to the Airflow DAG run it serves.

They let a failure callback (or `raydog reap --label`) find a run's clusters even when no state reached
XCom. Keys follow YellowDog's naming rules; the run id, which holds ':' and '+', becomes a digest.
"""

from __future__ import annotations

import hashlib

ORCHESTRATOR_LABEL = "orchestrator"
ORCHESTRATOR = "airflow"
DAG_LABEL = "airflow-dag-id"
RUN_LABEL = "airflow-run"


def run_digest(dag_id: str, run_id: str) -> str:
    return hashlib.sha256(f"{dag_id}\0{run_id}".encode()).hexdigest()[:16]


def lease_holder(dag_id: str, run_id: str) -> str:
    """The one lease every task of a DAG run renews on its cluster (a lease holder name)."""
    return f"airflow:{dag_id[:120]}:{run_digest(dag_id, run_id)}"


def dag_run_labels(dag_id: str, run_id: str) -> dict[str, str]:
    """Labels of every cluster built in one DAG run."""
    return {ORCHESTRATOR_LABEL: ORCHESTRATOR, DAG_LABEL: dag_id, RUN_LABEL: run_digest(dag_id, run_id)}
