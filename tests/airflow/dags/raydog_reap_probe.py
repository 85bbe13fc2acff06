"""A DAG with nothing to do: its runs give the reaper's Airflow check a real finished run to find."""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("raydog_reap_probe", schedule=None, start_date=datetime(2026, 1, 1, tzinfo=UTC)) as dag:
    EmptyOperator(task_id="nothing")
