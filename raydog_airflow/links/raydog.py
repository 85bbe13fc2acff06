"""Buttons on RayDog tasks: the Ray dashboard of a job's cluster, and the post-mortem bundle of a
cluster the shut-down task ended.

Airflow 3's API server never runs operator code, so each URL is saved in XCom by the task and read back.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import BaseOperatorLink
from airflow.sdk.execution_time.xcom import XCom


class _XComLink(BaseOperatorLink):
    """A button whose URL the task saved in XCom (under the link's own key)."""

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return XCom.get_value(key=self.xcom_key, ti_key=ti_key) or ""

    @classmethod
    def persist(cls, context: Any, url: str) -> None:
        context["ti"].xcom_push(key=cls().xcom_key, value=url)


class RayDashboardLink(_XComLink):
    name = "Ray Dashboard"


class PostMortemLink(_XComLink):
    """The post-mortem bundle (`raydog_core.postmortem`) of the cluster a shut-down task ended, as a
    file URL on the machine that ran the task (the path is also in the task's log and XCom)."""

    name = "RayDog post-mortem"
