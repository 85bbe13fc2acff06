"""RayDogTaskRunner: prefect-ray's RayTaskRunner on a Ray cluster RayDog builds for the flow run.

```python
@flow(task_runner=RayDogTaskRunner())                      # local cluster: head + one worker
@flow(task_runner=RayDogTaskRunner(cluster="prod"))        # a RayDogClusterConfig Block, loaded per run
```

Submission, futures and `remote_options` are prefect-ray's. This class adds the cluster's life cycle:
built when the runner is entered (or on the first submit with `lazy=True`), labelled with the flow-run
id, and always shut down when the flow run ends: success, failure, timeout, SIGTERM or Ctrl+C. Prefect
enters a fresh duplicate of the runner for every attempt and `__exit__` cannot tell failure from
success, so whether another attempt follows is asked of the Prefect API; with
`reuse_cluster_across_retries` (the default) the attempts of one flow run share one cluster.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.logging.loggers import flow_run_logger
from prefect.states import Failed
from prefect.task_runners import TaskRunner
from prefect_ray import RayTaskRunner
from prefect_ray.task_runners import PrefectRayFuture
from pydantic import ValidationError

from raydog_core.cluster import RayDogCluster
from raydog_core.errors import SpecError
from raydog_core.spec import ClusterSpec
from raydog_prefect import retries
from raydog_prefect.blocks import RayDogClusterConfig
from raydog_prefect.connection import RayConnection, check_connection, open_connection
from raydog_prefect.labels import ORCHESTRATOR, ORCHESTRATOR_LABEL, flow_run_labels
from raydog_prefect.logs import flush_forwarder, logs_forwarded, start_forwarder
from raydog_prefect.teardown import still_running, tear_down

ClusterSource = RayDogClusterConfig | ClusterSpec | str | None
RAY_CLIENT_ATTEMPTS = 3

# Environment a Ray driver reads for token authentication; set per connection, restored afterwards.
_RAY_AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")
_NO_NATIVE_SIGNAL_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


class RayDogTaskRunner(RayTaskRunner):
    """Runs a flow's tasks on a RayDog cluster built for the flow run and always shut down after it.

    Args:
        cluster: a RayDogClusterConfig Block, the name of a saved one (loaded when the flow runs, so
            it can be edited in the UI between runs), or a raydog_core ClusterSpec. Default: a local
            cluster with a head and one worker.
        lazy: build the cluster on the first task submission instead of when the flow starts.
        reuse_cluster_across_retries: the attempts of one flow run share one cluster.
        init_kwargs: extra keyword arguments for `ray.init`.
    """

    def __init__(
        self,
        cluster: ClusterSource = None,
        *,
        lazy: bool = False,
        reuse_cluster_across_retries: bool = True,
        init_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not isinstance(cluster, RayDogClusterConfig | ClusterSpec | str | None):
            raise TypeError(
                "cluster: expected a RayDogClusterConfig Block, the name of a saved one, a ClusterSpec "
                f"or None, got {type(cluster).__name__}"
            )
        super().__init__(address=None, init_kwargs=init_kwargs)
        self.cluster = cluster
        self.lazy = lazy
        self.reuse_cluster_across_retries = reuse_cluster_across_retries
        self._reset_runtime()

    def _reset_runtime(self) -> None:
        self._raydog_cluster: RayDogCluster | None = None
        self._config: RayDogClusterConfig | None = None
        self._connection: RayConnection | None = None
        self._flow_run_id: str | None = None
        self._run_logger: Any = self.logger
        self._saved_environment: dict[str, str | None] = {}
        self._on_existing_ray = False
        self._provision_lock = threading.Lock()
        self._api_settings: Any = None  # temporary_settings sharing an ephemeral API with Ray workers
        self._log_forwarder: Any = None
        self._submitted: list[PrefectRayFuture] = []  # their logs must reach the API before disconnecting

    # -- what Prefect expects of a task runner ------------------------------------------------------

    def duplicate(self) -> Self:
        return type(self)(
            cluster=self.cluster,
            lazy=self.lazy,
            reuse_cluster_across_retries=self.reuse_cluster_across_retries,
            init_kwargs=self.init_kwargs,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return False
        return self._settings() == other._settings()  # type: ignore[attr-defined]

    __hash__ = None  # type: ignore[assignment]  # mutable settings, like RayTaskRunner

    def _settings(self) -> tuple[Any, ...]:
        return (self.cluster, self.lazy, self.reuse_cluster_across_retries, self.init_kwargs)

    def __repr__(self) -> str:
        source = self.cluster if isinstance(self.cluster, str | None) else type(self.cluster).__name__
        return f"RayDogTaskRunner(cluster={source!r}, lazy={self.lazy})"

    def __getstate__(self) -> dict[str, Any]:
        """Settings only: Prefect ships the flow (and so its runner) to every Ray worker with each task."""
        state = self.__dict__.copy()
        for key in (
            "_raydog_cluster",
            "_config",
            "_connection",
            "_flow_run_id",
            "_run_logger",
            "_saved_environment",
            "_on_existing_ray",
            "_provision_lock",
            "_log_forwarder",
            "_api_settings",
            "_submitted",
            "_ray_context",
        ):
            state.pop(key, None)
        state.update(_started=False, _owns_ray=False)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._ray_context = None
        self._reset_runtime()

    # -- life cycle -----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        TaskRunner.__enter__(self)  # connecting is ours: RayTaskRunner.__enter__ would start a new Ray
        try:
            import ray

            if ray.is_initialized():
                # A Ray worker (Prefect enters the flow's runner around every task it runs there), or a
                # driver already connected (a nested flow, the user's own ray.init): build nothing.
                self._on_existing_ray = True
                self._owns_ray = False
                if ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
                    self._api_settings = _share_ephemeral_api()
                    self._log_forwarder = start_forwarder()
                return self
            self._api_settings = _share_ephemeral_api()
            flow_run = _flow_run_being_entered()
            self._flow_run_id = (
                str(flow_run.id) if flow_run is not None else os.environ.get("PREFECT__FLOW_RUN_ID")
            )
            if flow_run is not None:
                self._run_logger = flow_run_logger(flow_run=flow_run)
            if not self.lazy:
                self._provision()
        except BaseException as error:
            self._close(may_keep=False)
            if isinstance(error, Exception):  # signals and Ctrl+C: the engine marks the run Crashed
                self._mark_flow_run_failed(error)
            self._stop_sharing_api()
            TaskRunner.__exit__(self, None, None, None)
            raise
        return self

    def __exit__(self, exc_type: Any, exc_value: Any, traceback: Any) -> None:
        try:
            self._flush_task_logs(interrupted=exc_type is not None)
            super().__exit__(exc_type, exc_value, traceback)  # disconnects the Ray driver if ours
        except Exception:
            self._run_logger.exception("Disconnecting from Ray failed")
        finally:
            self._close(may_keep=exc_type is None)
            self._stop_sharing_api()

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None):
        if self._started and self._raydog_cluster is None and not self._on_existing_ray:
            with self._provision_lock:
                if self._raydog_cluster is None:
                    self._provision()
        future = super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)
        if self._log_forwarder is not None:
            self._submitted.append(future)
        return future

    @property
    def raydog_cluster(self) -> RayDogCluster | None:
        """The cluster this runner is using, while it is entered (None before it is built)."""
        return self._raydog_cluster

    # -- the remote side ------------------------------------------------------------------------------

    @staticmethod
    def _run_prefect_task(*upstream_ray_obj_refs: Any, **kwargs: Any) -> Any:
        """prefect-ray's remote entry point, with the task's API logs forwarded (see raydog_prefect.logs)."""
        with logs_forwarded(kwargs["task_run_id"]):
            return RayTaskRunner._run_prefect_task(*upstream_ray_obj_refs, **kwargs)

    # -- internals ------------------------------------------------------------------------------------

    def _provision(self) -> None:
        """Build (or take over from an earlier attempt) the cluster and connect Ray to it."""
        config = self._load_config()
        check_connection(config)
        self._config = config
        cluster = retries.take(self._flow_run_id) if self._reuses() else None
        if cluster is not None and still_running(cluster):
            self._run_logger.info(
                "Reusing RayDog cluster %s (%s) from an earlier attempt of this flow run",
                cluster.spec.cluster_name,
                cluster.cluster_id,
            )
        else:
            if cluster is not None:
                tear_down(cluster, self._run_logger)
            labels = (
                flow_run_labels(self._flow_run_id)
                if self._flow_run_id
                else {ORCHESTRATOR_LABEL: ORCHESTRATOR}
            )
            cluster = config.create_cluster(extra_labels=labels)
            self._run_logger.info(
                "Building RayDog cluster %s on backend %r (labels %s)",
                cluster.spec.cluster_name,
                cluster.spec.backend,
                cluster.spec.cluster_labels,
            )
            cluster.build()  # a failed or interrupted build shuts down what it created
        self._raydog_cluster = cluster
        self._connect(cluster, config)

    def _connect(self, cluster: RayDogCluster, config: RayDogClusterConfig) -> None:

        self._use_auth_environment(cluster.client_environment())
        self._connection = open_connection(cluster, config)
        self.address = self._connection.address
        with _no_native_signal_abort():
            self._ray_context = _init_ray(self.address, self.init_kwargs)
        self._owns_ray = True
        self._log_forwarder = start_forwarder()
        self._run_logger.info(
            "Connected to RayDog cluster %s (%s): Ray at %s, dashboard %s",
            cluster.spec.cluster_name,
            cluster.cluster_id,
            self.address,
            self._connection.dashboard_url or "not running",
        )

    def _flush_task_logs(self, interrupted: bool) -> None:
        """Before Ray kills the workers: wait (bounded; short when interrupted) for the tasks' logs."""
        forwarder, self._log_forwarder = self._log_forwarder, None
        submitted, self._submitted = self._submitted, []
        if forwarder is None or not submitted:
            return
        if self._raydog_cluster is not None and not still_running(self._raydog_cluster):
            self._run_logger.warning(
                "The RayDog cluster is already gone: logs of its tasks not yet sent are lost"
            )
            return
        try:
            import ray

            refs = [future.wrapped_future for future in submitted]
            finished, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # the rest die with the job
            finished_ids = {ref.hex() for ref in finished}
            done = [f.task_run_id for f in submitted if f.wrapped_future.hex() in finished_ids]
            missing = flush_forwarder(forwarder, done, timeout_s=2.0 if interrupted else 30.0)
        except Exception:
            self._run_logger.warning("Could not collect the logs of tasks run on Ray", exc_info=True)
            return
        if missing:
            self._run_logger.warning(
                "Logs of %d task run(s) did not arrive from Ray before shutdown", missing
            )

    def _close(self, may_keep: bool) -> None:
        """Close the connection and release the cluster: park it for the next attempt, or shut it down.

        `may_keep` is False when the runner is left by an exception (a signal, Ctrl+C, a failed start):
        then the cluster goes, whatever the flow run's state says.
        """
        cluster, self._raydog_cluster = self._raydog_cluster, None
        connection, self._connection = self._connection, None
        try:
            if connection is not None:
                connection.close()
        except Exception:
            self._run_logger.exception("Closing the connection to the RayDog cluster failed")
        self._restore_auth_environment()
        if cluster is None:
            return
        if may_keep and self._reuses() and self._another_attempt_follows():
            retries.park(self._flow_run_id, cluster)  # type: ignore[arg-type]
            self._run_logger.info(
                "Keeping RayDog cluster %s (%s) for the next attempt of this flow run",
                cluster.spec.cluster_name,
                cluster.cluster_id,
            )
            return
        tear_down(cluster, self._run_logger)

    def _mark_flow_run_failed(self, error: Exception) -> None:
        """Prefect re-raises an exception from a task runner's `__enter__` without changing the flow
        run's state, which would then show Running for ever: set it Failed, with the reason."""
        if self._flow_run_id is None:
            return
        message = f"RayDog could not provide the flow run's Ray cluster: {type(error).__name__}: {error}"
        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(self._flow_run_id, Failed(message=message))
        except Exception:
            self._run_logger.warning("Could not mark the flow run Failed", exc_info=True)

    def _stop_sharing_api(self) -> None:
        settings, self._api_settings = self._api_settings, None
        if settings is not None:
            try:
                settings.__exit__(None, None, None)
            except ValueError:  # left in another context than it was entered in: nothing to undo here
                pass

    def _reuses(self) -> bool:
        return self.reuse_cluster_across_retries and self._flow_run_id is not None

    def _another_attempt_follows(self) -> bool:
        """True when the flow run is not in a final state yet (the engine is about to retry it).

        Anything unclear (no API, no state) counts as "no": then the cluster is shut down.
        """
        try:
            with get_client(sync_client=True) as client:
                state = client.read_flow_run(self._flow_run_id).state  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001 - when in doubt, shut down
            self._run_logger.warning("Could not read the flow run's state; shutting the cluster down")
            return False
        return state is not None and not state.is_final()

    def _load_config(self) -> RayDogClusterConfig:
        source = self.cluster
        if source is None:
            return RayDogClusterConfig()
        if isinstance(source, RayDogClusterConfig):
            return source
        if isinstance(source, ClusterSpec):
            return RayDogClusterConfig.from_spec(source)
        name = source.removeprefix(RayDogClusterConfig.get_block_type_slug() + "/")
        try:
            return RayDogClusterConfig.load(name, _sync=True)
        except RuntimeError as error:
            # Prefect says only "failed validation"; the cause names the field and the fix.
            if not isinstance(error.__cause__, ValidationError):
                raise
            first = error.__cause__.errors()[0]
            problem = str(first["msg"]).removeprefix("Value error, ")
            raise SpecError(
                f"RayDogClusterConfig {name!r}",
                f"the saved Block is invalid: {problem}",
                "correct it in the Prefect UI or save the Block again",
            ) from None

    def _use_auth_environment(self, environment: dict[str, str]) -> None:
        """Point this process's Ray driver at the cluster's token (a file path; the token is never logged)."""
        self._saved_environment = {key: os.environ.get(key) for key in _RAY_AUTH_VARIABLES}
        for key in _RAY_AUTH_VARIABLES:
            os.environ.pop(key, None)
        os.environ.update(environment)

    def _restore_auth_environment(self) -> None:
        for key, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_environment = {}


def _init_ray(address: str, init_kwargs: dict[str, Any]) -> Any:
    """`ray.init`, retried a few times for Ray Client only: the head's client server starts one server
    process per client, and that start fails now and then on a busy head ("Starting Ray client server
    failed"); a new attempt gets a new process."""
    import time

    import ray

    attempts = RAY_CLIENT_ATTEMPTS if address.startswith("ray://") else 1
    for attempt in range(1, attempts + 1):
        try:
            return ray.init(address, **init_kwargs)
        except ConnectionError as error:
            if attempt == attempts or "client server failed" not in str(error):
                raise
            time.sleep(2.0 * attempt)
    raise AssertionError("unreachable")


@contextmanager
def _no_native_signal_abort() -> Iterator[None]:
    """Connect without Ray's native failure-signal handler in this process.

    By default a Ray driver installs one for SIGTERM that aborts the process a few seconds after the
    signal, whatever Python is doing: it would cut the cluster's teardown short. Without it, SIGTERM
    reaches Python, the flow unwinds and the runner tears the cluster down.
    """
    from ray._private import ray_constants

    # Ray reads the variable into ray_constants when it is imported, and the driver's core worker reads
    # that constant when it starts: set both, for this connection only.
    previous = os.environ.get(_NO_NATIVE_SIGNAL_HANDLER)
    previous_constant = ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER
    os.environ[_NO_NATIVE_SIGNAL_HANDLER] = "1"
    ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = True
    try:
        yield
    finally:
        ray_constants.RAY_DISABLE_FAILURE_SIGNAL_HANDLER = previous_constant
        if previous is None:
            os.environ.pop(_NO_NATIVE_SIGNAL_HANDLER, None)
        else:
            os.environ[_NO_NATIVE_SIGNAL_HANDLER] = previous


def _share_ephemeral_api() -> Any:
    """With no PREFECT_API_URL, Prefect runs a temporary API server only this process knows about; tasks
    on Ray workers would each start their own. Point the flow's settings (which travel with every task)
    at that server instead. Returns the entered settings context, or None when an API URL is set."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        return None
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()  # already running for this flow run: returns at once
    settings = temporary_settings(updates={PREFECT_API_URL: server.api_url})
    settings.__enter__()
    return settings


def _flow_run_being_entered() -> FlowRun | None:
    """The flow run whose engine is entering this runner.

    Prefect enters the task runner before it sets the run's FlowRunContext (FlowRunContext.get() is
    None, or the parent's for a subflow), so the run is read from the nearest flow-run engine up the
    call stack; outside an engine the current FlowRunContext is the answer.
    """
    from prefect.flow_engine import BaseFlowRunEngine

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, BaseFlowRunEngine) and candidate.flow_run is not None:
            return candidate.flow_run
        frame = frame.f_back
    context = FlowRunContext.get()
    return context.flow_run if context is not None else None


__all__ = ["PrefectRayFuture", "RayDogTaskRunner"]
