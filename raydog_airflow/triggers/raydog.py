"""Triggers: wait for a cluster or a Ray job in the triggerer, without holding a worker slot.

Every blocking call (backend SDK, Ray's HTTP client, SSH) runs in a thread, so the triggerer's event
loop never stalls. No trigger deletes or stops anything in `cleanup()`: that also runs when the
triggerer restarts. Only `on_kill` (a user killing the task) stops the Ray job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import ExitStack
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from raydog_airflow.hooks.raydog import RayDogHook, job_client
from raydog_airflow.ray_jobs import follow_job, job_outcome
from raydog_core import operations
from raydog_core.errors import RayDogError
from raydog_core.state import ClusterState

WaitFor = Literal["head", "workers"]


class RayDogClusterTrigger(BaseTrigger):
    """Waits until a cluster's head accepts connections ("head") or every node joined Ray ("workers").

    Fires {"status": "ready" | "failed" | "timeout", "cluster_state", "deadline", ...}; on "ready" for
    the head it adds the head's addresses.
    """

    def __init__(
        self,
        *,
        cluster_state: dict[str, Any],
        raydog_conn_id: str,
        wait_for: WaitFor,
        deadline: float,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__()
        self.cluster_state = cluster_state
        self.raydog_conn_id = raydog_conn_id
        self.wait_for = wait_for
        self.deadline = deadline  # epoch seconds: survives a triggerer restart unchanged
        self.poll_interval = poll_interval
        self._head_probe: operations.HeadProbe | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "cluster_state": self.cluster_state,
                "raydog_conn_id": self.raydog_conn_id,
                "wait_for": self.wait_for,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        settings = await RayDogHook.aget_settings(self.raydog_conn_id)
        backend = await asyncio.to_thread(settings.create_backend)
        try:
            while True:
                try:
                    extra = await asyncio.to_thread(self._check, backend)
                except RayDogError as error:
                    yield self._event("failed", error=str(error))
                    return
                if extra is not None:
                    yield self._event("ready", **extra)
                    return
                if time.time() >= self.deadline:
                    yield self._event(
                        "timeout", error=f"the cluster's {self.wait_for} did not come up in time"
                    )
                    return
                await asyncio.sleep(self.poll_interval)
        finally:
            await asyncio.to_thread(backend.close)

    def _check(self, backend: Any) -> dict[str, Any] | None:
        if self.wait_for == "head":
            if self._head_probe is None:  # one per wait: it remembers when the head's GCS opened
                self._head_probe = operations.head_probe(self.cluster_state, backend)
            head = operations.head_node_if_ready(self.cluster_state, backend, self._head_probe)
            if head is None:
                return None
            return {"head_private_ip": head.private_ip, "head_public_ip": head.public_ip}
        return {} if operations.all_nodes_joined(self.cluster_state, backend) else None

    def _event(self, status: str, **fields: Any) -> TriggerEvent:
        payload = {"status": status, "cluster_state": self.cluster_state, "deadline": self.deadline}
        return TriggerEvent({**payload, **fields})


class RayDogJobTrigger(BaseTrigger):
    """Follows a Ray job to its end, streaming its output into the task log; fires its final status."""

    def __init__(
        self,
        *,
        cluster_state: dict[str, Any],
        raydog_conn_id: str,
        job_id: str,
        stream_logs: bool = True,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__()
        self.cluster_state = cluster_state
        self.raydog_conn_id = raydog_conn_id
        self.job_id = job_id
        self.stream_logs = stream_logs
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "cluster_state": self.cluster_state,
                "raydog_conn_id": self.raydog_conn_id,
                "job_id": self.job_id,
                "stream_logs": self.stream_logs,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        stack = ExitStack()
        event: dict[str, str | None]
        try:
            client = await self._client(stack)
            details = await follow_job(
                client,
                self.job_id,
                self.log.info,
                stream_logs=self.stream_logs,
                poll_interval=self.poll_interval,
            )
        except (RayDogError, RuntimeError, OSError) as error:
            event = {"job_id": self.job_id, "status": "ERROR", "message": str(error)}
        else:
            status = str(details.status)
            event = {"job_id": self.job_id, "status": status, "message": details.message}
            self.log.info(job_outcome(self.job_id, status, details.message))
        finally:
            await asyncio.to_thread(stack.close)
        yield TriggerEvent(event)

    async def on_kill(self) -> None:
        """The user killed the task: stop the job too (never on a mere triggerer restart)."""
        stack = ExitStack()
        try:
            client = await self._client(stack)
            await asyncio.to_thread(client.stop_job, self.job_id)
            self.log.info("stopped Ray job %s", self.job_id)
        finally:
            await asyncio.to_thread(stack.close)

    async def _client(self, stack: ExitStack) -> Any:
        settings = await RayDogHook.aget_settings(self.raydog_conn_id)
        state = ClusterState.from_json(self.cluster_state)
        url = await asyncio.to_thread(stack.enter_context, settings.dashboard_url(state))
        return await asyncio.to_thread(job_client, url, state)
