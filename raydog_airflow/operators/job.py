"""RayDogSubmitJobOperator: run a Ray job on a RayDog cluster through Ray's own Jobs API.

The submission id is derived from the task instance, so a retry after a lost worker re-attaches to
the job still running instead of starting a second copy. The job's output streams into the task log;
the task fails when the job fails and returns the job id when it succeeds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, closing
from typing import Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from raydog_airflow.cluster_xcom import state_argument
from raydog_airflow.hooks.raydog import RayDogHook, job_client
from raydog_airflow.hooks.settings import RayDogConnectionSettings
from raydog_airflow.labels import lease_holder
from raydog_airflow.links.raydog import RayDashboardLink
from raydog_airflow.operators.cluster import _default_deferrable
from raydog_airflow.ray_jobs import (
    FAILED_STATUSES,
    follow_job,
    job_outcome,
    submission_id_base,
    submit_or_attach,
)
from raydog_airflow.triggers.raydog import RayDogJobTrigger
from raydog_core import operations
from raydog_core.errors import StateError
from raydog_core.runtime_envs import merged_runtime_env
from raydog_core.state import ClusterState


class RayDogJobFailedError(AirflowException):
    """The Ray job ended FAILED or STOPPED (or could not be followed)."""


class RayDogSubmitJobOperator(BaseOperator):
    """Submit a Ray job to a cluster and wait for it; returns the job (submission) id.

    :param cluster_state: the cluster's state, e.g. `build.output` (templated).
    :param entrypoint: the shell command the job runs on the head, with the head's PATH (templated).
    :param runtime_env: Ray runtime environment (working_dir, py_modules, pip, env_vars...) (templated),
        over the cluster spec's `runtime_env` (carried in the cluster state) key by key; their
        `env_vars` are merged, these win.
    :param submission_id: overrides the id derived from the task instance (templated).
    :param stream_logs: copy the job's output into the task log.
    :param deferrable: wait in the triggerer instead of holding a worker slot.
    """

    template_fields: Sequence[str] = (
        "cluster_state",
        "entrypoint",
        "runtime_env",
        "metadata",
        "submission_id",
    )
    template_fields_renderers = {"cluster_state": "json", "runtime_env": "json", "entrypoint": "bash"}
    operator_extra_links = (RayDashboardLink(),)
    ui_color = "#d8f5c9"

    def __init__(
        self,
        *,
        cluster_state: Any,
        entrypoint: str,
        runtime_env: Mapping[str, Any] | None = None,
        metadata: Mapping[str, str] | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: Mapping[str, float] | None = None,
        submission_id: str | None = None,
        raydog_conn_id: str = RayDogHook.default_conn_name,
        stream_logs: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_state = cluster_state
        self.entrypoint = entrypoint
        self.runtime_env = runtime_env
        self.metadata = metadata
        self.entrypoint_num_cpus = entrypoint_num_cpus
        self.entrypoint_num_gpus = entrypoint_num_gpus
        self.entrypoint_memory = entrypoint_memory
        self.entrypoint_resources = entrypoint_resources
        self.submission_id = submission_id
        self.raydog_conn_id = raydog_conn_id
        self.stream_logs = stream_logs
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self._stop_job: Any = None  # set while the job runs in place, for on_kill

    def execute(self, context: Context) -> str:
        state = state_argument(self.cluster_state)
        settings = RayDogHook(self.raydog_conn_id).get_conn()
        settings.check_state(state)
        _check_still_running(settings, state)
        ti = context["ti"]
        with ExitStack() as stack:
            # The DAG run's lease, renewed while the job is followed here; a deferred job is Ray work,
            # which keeps the cluster up by itself.
            dag_run = context["dag_run"]
            stack.enter_context(settings.hold_lease(state, lease_holder(dag_run.dag_id, dag_run.run_id)))
            url = stack.enter_context(settings.dashboard_url(state))
            stack.enter_context(settings.watches(state, self.log, url))  # cap, demand, lost nodes
            client = job_client(url, state)
            base = self.submission_id or submission_id_base(ti.dag_id, ti.run_id, ti.task_id, ti.map_index)
            job_id, attached = submit_or_attach(client, base, ti.try_number, self._submit_kwargs(state))
            self.log.info(
                "%s Ray job %s on cluster %s through the Ray Jobs API at %s",
                "re-attached to" if attached else "submitted",
                job_id,
                state.cluster_name,
                url,
            )
            if state.dashboard_url:
                RayDashboardLink.persist(context, f"{state.dashboard_url}/#/jobs/{job_id}")
            if self.deferrable:
                self.defer(
                    trigger=RayDogJobTrigger(
                        cluster_state=state.to_dict(),
                        raydog_conn_id=self.raydog_conn_id,
                        job_id=job_id,
                        stream_logs=self.stream_logs,
                        poll_interval=self.poll_interval,
                    ),
                    method_name="execute_complete",
                )
            self._stop_job = lambda: client.stop_job(job_id)
            try:
                details = asyncio.run(
                    follow_job(
                        client,
                        job_id,
                        self.log.info,
                        stream_logs=self.stream_logs,
                        poll_interval=self.poll_interval,
                    )
                )
            finally:
                self._stop_job = None
        return self._outcome(job_id, str(details.status), details.message)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        return self._outcome(event["job_id"], event["status"], event.get("message"))

    def on_kill(self) -> None:
        """The task is being killed: stop the job it is following (in-place mode)."""
        stop = self._stop_job
        if stop is not None:
            self.log.info("task killed: stopping the Ray job")
            stop()

    def _outcome(self, job_id: str, status: str, message: str | None) -> str:
        outcome = job_outcome(job_id, status, message)
        if status in FAILED_STATUSES or status == "ERROR":
            raise RayDogJobFailedError(outcome)
        self.log.info(outcome)
        return job_id

    def _submit_kwargs(self, state: ClusterState) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"entrypoint": self.entrypoint}
        optional = {
            "runtime_env": merged_runtime_env(state.runtime_env, self.runtime_env) or None,
            "metadata": dict(self.metadata) if self.metadata else None,
            "entrypoint_num_cpus": self.entrypoint_num_cpus,
            "entrypoint_num_gpus": self.entrypoint_num_gpus,
            "entrypoint_memory": self.entrypoint_memory,
            "entrypoint_resources": dict(self.entrypoint_resources) if self.entrypoint_resources else None,
        }
        kwargs.update({key: value for key, value in optional.items() if value is not None})
        return kwargs


def _check_still_running(settings: RayDogConnectionSettings, state: ClusterState) -> None:
    """Fail clearly on stale state (a cluster already shut down) instead of on its missing token or
    its closed dashboard."""
    with closing(settings.create_backend()) as backend:
        if not operations.is_alive(state, backend):
            raise StateError(
                f"cluster {state.cluster_name} ({state.cluster_id}) is shut down: cluster_state is stale "
                "(from an earlier run, or the cluster was reaped or outlived cluster_lifetime); "
                "build the cluster again"
            )
