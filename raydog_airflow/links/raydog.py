"""RayDashboardLink: a button on the task that opens the Ray dashboard of the job's cluster.

Airflow 3's API server never runs operator code, so the URL is saved in XCom by the task and read back.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom


class RayDashboardLink(BaseOperatorLink):
    name = "Ray Dashboard"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Any, url: str) -> None:
        context["ti"].xcom_push(key=cls().xcom_key, value=url)
