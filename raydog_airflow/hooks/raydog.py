"""RayDogHook: the `raydog` connection type — where clusters run and how to reach them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from raydog_airflow.hooks.settings import RayDogConnectionSettings, ray_token
from raydog_core.backends import Backend
from raydog_core.errors import RayDogError
from raydog_core.state import ClusterState

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient


class RayDogHook(BaseHook):
    """Reads a `raydog` connection; without a `raydog_default` connection it means the local backend."""

    conn_name_attr = "raydog_conn_id"
    default_conn_name = "raydog_default"
    conn_type = "raydog"
    hook_name = "RayDog"

    def __init__(self, raydog_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.raydog_conn_id = raydog_conn_id
        self._settings: RayDogConnectionSettings | None = None

    def get_conn(self) -> RayDogConnectionSettings:
        if self._settings is None:
            self._settings = self._read(self._connection_or_none())
        return self._settings

    @classmethod
    async def aget_settings(cls, raydog_conn_id: str) -> RayDogConnectionSettings:
        """The settings, fetched without blocking an event loop (for triggers)."""
        try:
            connection = await cls.aget_connection(raydog_conn_id)
        except AirflowNotFoundException:
            if raydog_conn_id != cls.default_conn_name:
                raise
            connection = None
        return cls._read(connection, raydog_conn_id)

    def create_backend(self) -> Backend:
        return self.get_conn().create_backend()

    def test_connection(self) -> tuple[bool, str]:
        """Local: is Ray installed here? YellowDog: does the platform accept the key?"""
        try:
            settings = self.get_conn()
            if settings.backend == "local":
                ray = Path(sys.executable).parent / "ray"
                if not ray.exists() and shutil.which("ray") is None:
                    return False, "local backend: the `ray` command is not installed next to this Python"
                return True, "local backend: Ray is installed; clusters run on this machine"
            backend = settings.create_backend()
            try:
                clusters = backend.list_clusters()
            finally:
                backend.close()
            return True, f"YellowDog platform answered; {len(clusters)} RayDog clusters visible"
        except (RayDogError, OSError) as error:
            return False, str(error)
        except Exception as error:  # noqa: BLE001 - the SDK's own errors; the UI shows the message
            return False, f"{type(error).__name__}: {error}"

    def _connection_or_none(self) -> Any:
        try:
            return self.get_connection(self.raydog_conn_id)
        except AirflowNotFoundException:
            if self.raydog_conn_id != self.default_conn_name:
                raise
            self.log.info("no connection %s: using the local backend", self.raydog_conn_id)
            return None

    @staticmethod
    def _read(connection: Any, conn_id: str = default_conn_name) -> RayDogConnectionSettings:
        if connection is None:
            return RayDogConnectionSettings()
        return RayDogConnectionSettings.from_fields(
            host=connection.host,
            login=connection.login,
            password=connection.password,
            extra=connection.extra_dejson,
            conn_id=connection.conn_id or conn_id,
        )


def job_client(dashboard_url: str, state: ClusterState) -> JobSubmissionClient:
    """A JobSubmissionClient for the dashboard URL; the token goes into a header and Airflow's masker."""
    from ray.job_submission import JobSubmissionClient

    headers = {}
    token = ray_token(state)
    if token:
        mask_secret(token)
        headers["Authorization"] = f"Bearer {token}"
    return JobSubmissionClient(address=dashboard_url, headers=headers)


def mask_secret(secret: str) -> None:
    """Tell Airflow's log masker about a secret, so it is redacted should anything ever print it."""
    from airflow.sdk.log import mask_secret as airflow_mask_secret

    airflow_mask_secret(secret)
