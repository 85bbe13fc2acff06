"""Helpers for the end-to-end tests: load a DAG from the bundle, read a run's task states and XComs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from conftest import DAGS_FOLDER


def load_dag(dag_id: str, file: str | None = None) -> Any:
    """The DAG `dag_id` of `<file or dag_id>.py` in the DAGs folder (where dag.test() finds it again):
    the file's `dag`, or for a file of several DAGs the one it holds under the DAG's id."""
    name = file or dag_id
    spec = importlib.util.spec_from_file_location(f"dags_{name}", DAGS_FOLDER / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, dag_id, None) or module.dag


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcom_rows(dag_run: Any) -> list[Any]:
    """Every XCom row of the run, straight from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id).all()
        return [(row.task_id, row.key, row.value) for row in rows]


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    for row_task, row_key, value in xcom_rows(dag_run):
        if row_task == task_id and row_key == key:
            return value
    return None


def live(raydog_home: Path) -> list[str]:
    from raydog_core.backends.local.backend import LocalBackend

    return LocalBackend(raydog_home / "local").live_resources()
