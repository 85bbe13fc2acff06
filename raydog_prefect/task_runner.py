"""RayDogTaskRunner: prefect-ray's RayTaskRunner on a Ray cluster RayDog builds for the flow run.

```python
@flow(task_runner=RayDogTaskRunner())                      # local cluster: head + one worker
@flow(task_runner=RayDogTaskRunner(cluster="prod"))        # a RayDogClusterConfig Block, loaded per run
```

Submission, futures and `remote_options` are prefect-ray's. This class adds the cluster's life cycle,
shaped like prefect-dask's runner: entering the runner only opens an ExitStack; the cluster is built
(or taken over from an earlier attempt) when the flow run first needs it, on its first task submission
or `flow_run_cluster()`, because only then does Prefect say which flow run it is (`FlowRunContext`; it
is not set yet when the engine enters the runner). Every resource (API settings, cluster, Ray auth
scope, tunnel, Ray driver, log forwarder) goes on that stack, so leaving the runner releases them in
reverse order, once, whatever happened: success, failure, timeout, SIGTERM or Ctrl+C.

Prefect enters a fresh duplicate of the runner for every attempt and `__exit__` cannot tell failure
from success, so whether another attempt follows is asked of the Prefect API; with
`reuse_cluster_across_retries` (the default) the attempts of one flow run share one cluster.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from functools import partial
from types import TracebackType
from typing import Any, Self, cast

from prefect import get_run_logger
from prefect.artifacts import create_link_artifact
from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect_ray import RayTaskRunner
from prefect_ray.task_runners import PrefectRayFuture
from pydantic import ValidationError

from raydog_core import auth, naming
from raydog_core.client_auth import ClientAuthScope
from raydog_core.cluster import RayDogCluster
from raydog_core.errors import SpecError
from raydog_core.leases import LeaseClient, LeaseKeeper, holder_name
from raydog_core.runtime_envs import merged_runtime_env
from raydog_core.spec import ClusterSpec
from raydog_prefect import retries
from raydog_prefect.blocks import RayDogClusterConfig
from raydog_prefect.connection import RayConnection, check_connection, open_connection, resolve_mode
from raydog_prefect.labels import ORCHESTRATOR, ORCHESTRATOR_LABEL, flow_run_labels
from raydog_prefect.logs import flush_forwarder, logs_forwarded, start_forwarder
from raydog_prefect.post_mortem import attach_post_mortem
from raydog_prefect.teardown import leave, still_running, tear_down

ClusterSource = RayDogClusterConfig | ClusterSpec | str | None
RAY_CLIENT_ATTEMPTS = 3
# What a Ray worker imports to run its first Prefect task: a warm cluster's workers import it as they
# start, so a ready worker (raydog_core/prestart.py) runs the next run's first task at once.
WORKER_MODULES = ("raydog_prefect.task_runner", "prefect.task_engine")
RAY_CLIENT_START_FAILED = ("client server failed", "Initialization failure from server")  # worth a new client
ExitCallback = Callable[[type[BaseException] | None, BaseException | None, TracebackType | None], None]

# prefect-ray's remote entry point, wrapped below to forward the tasks' logs. Checked here so that a
# prefect-ray release renaming it fails at import instead of silently losing every task's logs.
if not callable(getattr(RayTaskRunner, "_run_prefect_task", None)):  # pragma: no cover
    raise ImportError("raydog_prefect needs prefect-ray's RayTaskRunner._run_prefect_task (prefect-ray 0.6)")


@dataclass(frozen=True)
class RunnerSettings:
    """Everything a RayDogTaskRunner is configured with: all that duplicate(), == and pickling carry."""

    cluster: ClusterSource = None
    reuse_cluster_across_retries: bool = True
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)
    reuse: str | None = None


class RayDogTaskRunner(RayTaskRunner):
    """Runs a flow's tasks on a RayDog cluster built for the flow run and always shut down after it.

    Args:
        cluster: a RayDogClusterConfig Block, the name of a saved one (loaded when the flow runs, so
            it can be edited in the UI between runs), or a raydog_core ClusterSpec. Default: a local
            cluster with a head and one worker.
        reuse_cluster_across_retries: the attempts of one flow run share one cluster.
        init_kwargs: extra keyword arguments for `ray.init`. Its `runtime_env` goes over the cluster
            configuration's `runtime_env` key by key (their `env_vars` are merged, these win).
        reuse: a reuse key (the configuration's `reuse_key` otherwise): flow runs with the same key and
            the same cluster configuration share one warm cluster, which stays up for `idle_ttl`
            (default 10 minutes) after the last run left, then ends itself. Each run's Ray work has
            its own Ray namespace.
        lazy: deprecated, no effect: the cluster is always built when the flow run first needs it.
    """

    def __init__(
        self,
        cluster: ClusterSource = None,
        *,
        reuse_cluster_across_retries: bool = True,
        init_kwargs: dict[str, Any] | None = None,
        lazy: bool | None = None,
        reuse: str | None = None,
    ) -> None:
        if not isinstance(cluster, RayDogClusterConfig | ClusterSpec | str | None):
            raise TypeError(
                "cluster: expected a RayDogClusterConfig Block, the name of a saved one, a ClusterSpec "
                f"or None, got {type(cluster).__name__}"
            )
        if lazy is not None:
            warnings.warn(
                "RayDogTaskRunner(lazy=...) has no effect: the cluster is always built when the flow run "
                "first needs it (its first task, or flow_run_cluster())",
                DeprecationWarning,
                stacklevel=2,
            )
        if reuse is not None:
            naming.check_name("reuse", reuse, naming.MAX_REUSE_KEY_LENGTH)
        super().__init__(address=None, init_kwargs=init_kwargs)
        self.settings = RunnerSettings(cluster, reuse_cluster_across_retries, dict(init_kwargs or {}), reuse)
        self._resources: ExitStack | None = None  # open while the runner is entered
        self._provisioned = False
        self._provision_error: Exception | None = None  # raised again: one failed build per attempt
        self._provision_lock = threading.Lock()
        self._raydog_cluster: RayDogCluster | None = None
        self._connection: RayConnection | None = None
        self._submitted: list[PrefectRayFuture] | None = None  # their logs must reach the API first

    @classmethod
    def from_settings(cls, settings: RunnerSettings) -> Self:
        return cls(
            settings.cluster,
            reuse_cluster_across_retries=settings.reuse_cluster_across_retries,
            init_kwargs=dict(settings.init_kwargs),
            reuse=settings.reuse,
        )

    @property
    def cluster(self) -> ClusterSource:
        return self.settings.cluster

    @property
    def reuse_cluster_across_retries(self) -> bool:
        return self.settings.reuse_cluster_across_retries

    @property
    def raydog_cluster(self) -> RayDogCluster | None:
        """The cluster this runner is using (None before the flow run needed it, or on an existing Ray)."""
        return self._raydog_cluster

    # -- what Prefect expects of a task runner ------------------------------------------------------

    def duplicate(self) -> Self:
        return self.from_settings(self.settings)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RayDogTaskRunner) or type(other) is not type(self):
            return False
        return other.settings == self.settings

    __hash__ = None  # type: ignore[assignment]  # mutable settings, like RayTaskRunner

    def __reduce__(self) -> tuple[Any, ...]:
        """Only the settings travel, and never a secret: Prefect ships the flow (and so its runner) to
        Ray with every task, where the runner builds nothing. A Block holding YellowDog credentials
        travels as its saved name, or without the credentials when it was never saved."""
        return (type(self).from_settings, (replace(self.settings, cluster=_secret_free(self.cluster)),))

    def __repr__(self) -> str:
        source = self.cluster if isinstance(self.cluster, str | None) else type(self.cluster).__name__
        return f"RayDogTaskRunner(cluster={source!r})"

    # -- life cycle -----------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        """Open the stack the run's resources go on; nothing is built before the flow run needs it."""
        if self._resources is not None:
            raise RuntimeError("This task runner is already started")
        self._resources = ExitStack()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        resources, self._resources = self._resources, None
        self._provisioned, self._provision_error = False, None
        if resources is not None:
            resources.__exit__(exc_type, exc_value, traceback)

    def submit(self, task: Any, parameters: dict[str, Any], wait_for: Any = None, dependencies: Any = None):
        self.connect()
        future = super().submit(task, parameters, wait_for=wait_for, dependencies=dependencies)
        if self._submitted is not None:
            self._submitted.append(future)
        return future

    def map(self, task: Any, parameters: dict[str, Any], wait_for: Any = None):
        self.connect()  # prefect's map wants a started runner before it submits
        return super().map(task, parameters, wait_for)

    def connect(self) -> RayDogCluster | None:
        """Connect Ray for this flow run, building its cluster unless that happened already; returns the
        cluster (None when an existing Ray connection is used: on a Ray worker, in a nested flow)."""
        if self._resources is None:
            raise RuntimeError("The task runner must be started before submitting work.")
        with self._provision_lock:
            if self._provision_error is not None:
                raise self._provision_error
            if not self._provisioned:
                try:
                    with ExitStack() as stack:  # a failure unwinds what was set up so far, with the error
                        self._provision(stack)
                        self._resources.enter_context(stack.pop_all())
                except Exception as error:
                    self._provision_error = error
                    raise
                self._provisioned = True
        return self._raydog_cluster

    # -- the remote side ------------------------------------------------------------------------------

    @staticmethod
    def _run_prefect_task(*upstream_ray_obj_refs: Any, **kwargs: Any) -> Any:
        """prefect-ray's remote entry point, with the task's API logs forwarded (see raydog_prefect.logs)."""
        with logs_forwarded(kwargs["task_run_id"], kwargs["context"].get("settings_context") or {}):
            return RayTaskRunner._run_prefect_task(*upstream_ray_obj_refs, **kwargs)

    # -- provisioning: every step puts its undo on the stack ----------------------------------------

    def _provision(self, stack: ExitStack) -> None:
        import ray

        if ray.is_initialized():
            # A Ray worker (Prefect enters the flow's runner around every task it runs there), or a
            # driver already connected (a nested flow, the user's own ray.init): build nothing.
            driver = ray.get_runtime_context().worker.mode != ray.WORKER_MODE
            if driver:
                stack.enter_context(_ephemeral_api_shared())
            self._connect_ray(stack, address=None)
            if driver:
                self._forward_task_logs(stack, self.logger)
            return
        context = FlowRunContext.get()
        flow_run_id = str(context.flow_run.id) if context is not None and context.flow_run else None
        logger = get_run_logger() if flow_run_id else self.logger
        stack.enter_context(_ephemeral_api_shared())
        config = self.load_config()
        check_connection(config)
        cluster = self._take_or_build(config, flow_run_id, logger)
        stack.push(self._releaser(cluster, flow_run_id, logger))
        self._raydog_cluster = cluster
        stack.callback(setattr, self, "_raydog_cluster", None)
        stack.enter_context(ClientAuthScope(cluster.client_environment()))  # the token: a file path
        self._connection = open_connection(cluster, config)
        stack.callback(
            _logged, logger, "Closing the connection to the RayDog cluster", self._close_connection
        )
        self._hold_lease_through_tunnel(stack, cluster, flow_run_id)
        if cluster.is_warm and "namespace" not in self.settings.init_kwargs:
            # Runs sharing a warm cluster do not see each other's named actors (see docs/prefect.md).
            namespace = f"prefect-{flow_run_id or 'run'}"
            self.init_kwargs: dict[str, Any] = {**self.settings.init_kwargs, "namespace": namespace}
        runtime_env = merged_runtime_env(
            cluster.spec.runtime_env, self.settings.init_kwargs.get("runtime_env")
        )
        if runtime_env:
            self.init_kwargs = {**self.init_kwargs, "runtime_env": runtime_env}
        self._connect_ray(stack, self._connection.address)
        self._forward_task_logs(stack, logger)
        logger.info(
            "Connected to RayDog cluster %s (%s): Ray at %s, dashboard %s",
            cluster.spec.cluster_name,
            cluster.cluster_id,
            self.address,
            self._connection.dashboard_url or "not running",
        )
        if flow_run_id and self._connection.dashboard_url:
            _link_dashboard(cluster, self._connection.dashboard_url, logger)
        if self._connection.dashboard_url:
            # Ray work no node can run is explained in the run's log ("why isn't it scaling?").
            cluster.watch_demand(logger, self._connection.dashboard_url)

    def _take_or_build(
        self, config: RayDogClusterConfig, flow_run_id: str | None, logger: Any
    ) -> RayDogCluster:
        """The cluster an earlier attempt of this flow run parked, if still running; else a new one."""
        warm = config.reuse_key is not None
        cluster = (
            retries.take(flow_run_id) if flow_run_id and self._reuses(flow_run_id) and not warm else None
        )
        if cluster is not None and still_running(cluster):
            logger.info(
                "Reusing RayDog cluster %s (%s) from an earlier attempt of this flow run",
                cluster.spec.cluster_name,
                cluster.cluster_id,
            )
            return cluster
        if cluster is not None:
            tear_down(cluster, logger)
        # A warm cluster outlives this run: it is not labelled with it (crash hooks and the reaper's
        # run-finished check then leave it alone; its leases and idle_ttl end it).
        if flow_run_id is not None and not warm:
            labels = flow_run_labels(flow_run_id)
        else:
            labels = {ORCHESTRATOR_LABEL: ORCHESTRATOR}
        cluster = config.create_cluster(extra_labels=labels, preload_modules=WORKER_MODULES if warm else ())
        logger.info(
            "%s RayDog cluster %s on backend %r (labels %s)",
            "Finding or building warm" if warm else "Building",
            cluster.spec.cluster_name,
            cluster.spec.backend,
            cluster.spec.cluster_labels,
        )
        cluster.log_plan(logger)
        # Leased where this process reaches the head, directly (the builder holds the lease) or through
        # its SSH tunnel (the runner does, once connected): if the flow's process dies, even by SIGKILL,
        # the cluster ends itself once `lease_timeout` has passed.
        through_tunnel = resolve_mode(config) == "ssh-tunnel"
        leased = through_tunnel or cluster.can_hold_lease()
        if not leased:
            logger.warning(
                "RayDog cluster %s is not leased (ray_connection %r cannot reach its head's lease "
                "endpoint): it lives until this flow run shuts it down, its crash hook runs, or its "
                "cluster_lifetime ends",
                cluster.spec.cluster_name,
                config.ray_connection,
            )
        # A failed or interrupted build shuts down what it created, and leaves its post-mortem.
        try:
            cluster.build(
                lease=leased, lease_holder=_lease_holder(flow_run_id), hold_lease=not through_tunnel
            )
        except BaseException:
            attach_post_mortem(cluster, flow_run_id, logger)
            raise
        cluster.watch_spend(logger)  # a capped cluster: 80 % and 100 % of the cap in the flow run's log
        if cluster.is_warm:
            logger.info(
                "%s warm RayDog cluster %s (%s) for reuse_key %r",
                "Attached to" if cluster.attached else "Built",
                cluster.spec.cluster_name,
                cluster.cluster_id,
                config.reuse_key,
            )
        return cluster

    def _releaser(self, cluster: RayDogCluster, flow_run_id: str | None, logger: Any) -> ExitCallback:
        """The cluster's undo: park it for the next attempt of the flow run, or shut it down.

        Left by an exception (a signal, Ctrl+C, a failed connection), the cluster goes whatever the flow
        run's state says.
        """

        def release(exc_type: type[BaseException] | None, *_: Any) -> None:
            if cluster.is_warm:
                leave(cluster, logger)  # the next run with its key attaches; idle, it ends itself
            elif (
                exc_type is None
                and self._reuses(flow_run_id)
                and _another_attempt_follows(flow_run_id, logger)
            ):
                retries.park(flow_run_id, cluster)  # type: ignore[arg-type]
                logger.info(
                    "Keeping RayDog cluster %s (%s) for the next attempt of this flow run",
                    cluster.spec.cluster_name,
                    cluster.cluster_id,
                )
            else:
                tear_down(cluster, logger, flow_run_id)

        return release

    def _hold_lease_through_tunnel(
        self, stack: ExitStack, cluster: RayDogCluster, flow_run_id: str | None
    ) -> None:
        """Through an SSH tunnel, the flow run's lease goes the way its Ray traffic goes."""
        terms = cluster.state.lease
        url = self._connection.lease_url if self._connection else None
        if terms is None or url is None:
            return
        client = LeaseClient(url, auth.load_token(cluster.cluster_id or ""))
        keeper = LeaseKeeper(lambda: client, _lease_holder(flow_run_id), terms).take()
        # Next, the cluster is shut down or parked; a warm one is left, so the lease is released now.
        stack.callback(keeper.stop, release=cluster.is_warm)

    def _connect_ray(self, stack: ExitStack, address: str | None) -> None:
        """prefect-ray's own start (`ray.init`, or the Ray already connected), safe to SIGTERM.

        Retried a few times for Ray Client only: the head's client server starts one server process per
        client, and that start fails now and then on a busy head ("Starting Ray client server failed", or
        Ray 2.60's own race on a server process that already exited: "Initialization failure from
        server" with psutil's ZombieProcess).
        """
        self.address = address
        attempts = RAY_CLIENT_ATTEMPTS if address and address.startswith("ray://") else 1
        for attempt in range(1, attempts + 1):
            try:
                with _native_sigterm_abort_removed():
                    super().__enter__()
                break
            except ConnectionError as error:
                self._started = False  # prefect-ray's start failed half-way: it may start again
                if attempt == attempts or not any(sign in str(error) for sign in RAY_CLIENT_START_FAILED):
                    raise
                time.sleep(2.0 * attempt)
        stack.push(partial(_logged, self.logger, "Disconnecting from Ray", super().__exit__))

    def _forward_task_logs(self, stack: ExitStack, logger: Any) -> None:
        """Start this job's log forwarder (a warm cluster's shared one); before Ray disconnects, wait
        (bounded) for the tasks' logs."""
        cluster = self._raydog_cluster
        forwarder = start_forwarder(shared=cluster is not None and cluster.is_warm)
        self._submitted = []

        def flush(exc_type: type[BaseException] | None, *_: Any) -> None:
            submitted, self._submitted = self._submitted, None
            if submitted:
                _flush_task_logs(forwarder, submitted, self._raydog_cluster, logger, exc_type is not None)

        stack.push(flush)

    def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def _reuses(self, flow_run_id: str | None) -> bool:
        return self.reuse_cluster_across_retries and flow_run_id is not None

    def load_config(self) -> RayDogClusterConfig:
        """The cluster configuration: the Block given, a saved one loaded by name now, or the default;
        with this runner's `reuse` key, if it has one."""
        config = self._load_source()
        reuse = self.settings.reuse
        return config if reuse is None else config.model_copy(update={"reuse_key": reuse})

    def _load_source(self) -> RayDogClusterConfig:
        source = self.cluster
        if source is None:
            return RayDogClusterConfig()
        if isinstance(source, RayDogClusterConfig):
            return source
        if isinstance(source, ClusterSpec):
            return RayDogClusterConfig.from_spec(source)
        name = source.removeprefix(RayDogClusterConfig.get_block_type_slug() + "/")
        try:
            # Prefect's sync_compatible adds `_sync`, which its signature does not show.
            return cast(RayDogClusterConfig, RayDogClusterConfig.load(name, _sync=True))  # type: ignore[call-arg]
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


def _link_dashboard(cluster: RayDogCluster, url: str, logger: Any) -> None:
    """The Ray dashboard as a link artifact on the flow run's page (through the run's SSH tunnel where
    one is used: then it answers while the run lasts). A failure is logged, never the run's."""
    try:
        create_link_artifact(
            link=url,
            link_text=f"Ray dashboard of {cluster.spec.cluster_name}",
            description=f"The Ray dashboard of RayDog cluster {cluster.spec.cluster_name} "
            f"({cluster.cluster_id}) that ran this flow run's tasks; it answers while the cluster is up.",
        )
    except Exception as error:  # noqa: BLE001 - the link is a convenience
        logger.warning("Could not attach the Ray dashboard link to the flow run: %s", error)


def _lease_holder(flow_run_id: str | None) -> str:
    return f"prefect-flow-run:{flow_run_id}" if flow_run_id else holder_name("prefect")


def flow_run_cluster() -> RayDogCluster | None:
    """Connect this flow run's Ray now, building its RayDog cluster if no task did yet.

    For flow code that uses Ray directly (Ray Data, actors) before submitting any task. Returns the
    cluster (None when the runner uses an existing Ray connection, as in a nested flow).
    """
    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if not isinstance(runner, RayDogTaskRunner):
        raise RuntimeError("flow_run_cluster() must be called in a flow that runs on RayDogTaskRunner")
    return runner.connect()


def _another_attempt_follows(flow_run_id: str | None, logger: Any) -> bool:
    """True when the flow run is not in a final state yet (the engine is about to retry it).

    Anything unclear (no API, no state) counts as "no": then the cluster is shut down.
    """
    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(flow_run_id).state  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - when in doubt, shut down
        logger.warning("Could not read the flow run's state; shutting the cluster down")
        return False
    return state is not None and not state.is_final()


def _flush_task_logs(
    forwarder: Any,
    submitted: list[PrefectRayFuture],
    cluster: RayDogCluster | None,
    logger: Any,
    interrupted: bool,
) -> None:
    """Before Ray kills the workers: wait (bounded; short when interrupted) for the finished tasks' logs."""
    if cluster is not None and not still_running(cluster):
        logger.warning("The RayDog cluster is already gone: logs of its tasks not yet sent are lost")
        return
    try:
        import ray

        refs = [future.wrapped_future for future in submitted]
        finished, _ = ray.wait(refs, num_returns=len(refs), timeout=0)  # the rest die with the job
        finished_ids = {ref.hex() for ref in finished}
        done = [f.task_run_id for f in submitted if f.wrapped_future.hex() in finished_ids]
        missing = flush_forwarder(forwarder, done, timeout_s=2.0 if interrupted else 30.0)
    except Exception:
        logger.warning("Could not collect the logs of tasks run on Ray", exc_info=True)
        return
    if missing:
        logger.warning("Logs of %d task run(s) did not arrive from Ray before shutdown", missing)


def _logged(logger: Any, what: str, undo: Callable[..., Any], *args: Any) -> None:
    """Run one undo step; a failure is logged, never raised over the flow's own outcome."""
    try:
        undo(*args)
    except Exception:
        logger.exception("%s failed", what)


@contextmanager
def _native_sigterm_abort_removed() -> Iterator[None]:
    """Around `ray.init`: take Ray's native SIGTERM handler out again, keep Ray's Python one.

    A Ray driver's core worker installs a native failure-signal handler that aborts the process 3 s
    after a SIGTERM, cutting the cluster's teardown short (measured with ray 2.60). Setting the Python
    handler again with the standard `signal.signal` puts Python's C-level handler back in front of it.
    The Python handler stays Ray's own (`sys.exit`, installed by `ray.init`): a blocking `ray.get` turns
    only SystemExit or KeyboardInterrupt raised by a handler into an interruption, and swallows anything
    else (Prefect's TerminationSignal) and keeps waiting. (Ray's documented switch,
    `RAY_DISABLE_FAILURE_SIGNAL_HANDLER`, works only if set before `ray` is imported, which a flow module
    usually does first.) Off the main thread Python sets no handlers, and Ray installs none.
    """
    try:
        yield
    finally:
        if threading.current_thread() is threading.main_thread():
            handler = signal.getsignal(signal.SIGTERM)
            if handler is not None:  # None: installed outside Python, nothing Python can put back
                signal.signal(signal.SIGTERM, handler)


def _ephemeral_api_shared() -> AbstractContextManager[Any]:
    """With no PREFECT_API_URL, Prefect runs a temporary API server only this process knows about; tasks
    on Ray workers would each start their own. Point the flow's settings (which travel with every task)
    at that server instead, until the runner exits."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    if PREFECT_API_URL.value():
        return nullcontext()
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()  # already running for this flow run: returns at once
    return _tolerant_of_another_context(temporary_settings(updates={PREFECT_API_URL: server.api_url}))


@contextmanager
def _tolerant_of_another_context(settings: AbstractContextManager[Any]) -> Iterator[None]:
    """Settings entered on the first submit of an async flow (inside its task's context) are left from
    the engine's context, where resetting them raises ValueError: they ended with that task already."""
    settings.__enter__()
    try:
        yield
    finally:
        try:
            settings.__exit__(None, None, None)
        except ValueError:
            pass


def _secret_free(source: ClusterSource) -> ClusterSource:
    """The cluster source as it may leave this process: no credentials inside."""
    if not isinstance(source, RayDogClusterConfig) or source.yellowdog_credentials is None:
        return source
    name = getattr(source, "_block_document_name", None)
    if name and not getattr(source, "_is_anonymous", True):
        return name  # loaded again by name, credentials from the Prefect API, where ever it is needed
    return source.model_copy(update={"yellowdog_credentials": None})


__all__ = ["PrefectRayFuture", "RayDogTaskRunner", "RunnerSettings", "flow_run_cluster"]
