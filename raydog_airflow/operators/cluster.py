"""Operators that build, grow, shrink and shut down a RayDog cluster; the state travels in XCom.

```python
build = RayDogBuildOperator(task_id="build", spec={"cluster_name": "etl", "worker_pools": [...]})
grow = RayDogAddWorkerPoolOperator(task_id="grow", cluster_state=build.output, worker_pool_node_count=2)
shutdown = RayDogShutdownOperator(task_id="shutdown", cluster_state=build.output)
build.as_setup() >> grow >> shutdown.as_teardown()
```
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from airflow.sdk import BaseOperator, Context, TriggerRule
from airflow.sdk.configuration import conf

from raydog_airflow.cluster_xcom import (
    POST_MORTEM_XCOM_KEY,
    STATE_XCOM_KEY,
    USAGE_XCOM_KEY,
    push_state,
    state_argument,
    unique_states,
)
from raydog_airflow.failures import retry_only_infrastructure
from raydog_airflow.hooks.raydog import RayDogHook
from raydog_airflow.hooks.settings import RayDogConnectionSettings
from raydog_airflow.labels import ORCHESTRATOR_LABEL, dag_run_labels, lease_holder
from raydog_airflow.links.raydog import PostMortemLink
from raydog_airflow.triggers.raydog import RayDogClusterTrigger
from raydog_core import naming, operations, postmortem, reuse
from raydog_core.cluster import RayDogCluster
from raydog_core.errors import BuildError, BuildTimeoutError
from raydog_core.spec import ClusterSpec, WorkerPoolSpec, build_model, load_spec_file
from raydog_core.state import ClusterState

SpecArgument = ClusterSpec | Mapping[str, Any] | str | None


def _holder(context: Context) -> str:
    """The DAG run's lease: every RayDog task of the run renews the same one."""
    dag_run = context["dag_run"]
    return lease_holder(dag_run.dag_id, dag_run.run_id)


def _default_deferrable() -> bool:
    return conf.getboolean("operators", "default_deferrable", fallback=False)


class RayDogBuildOperator(BaseOperator):
    """Build a cluster from a spec; returns its state (a plain dict, no secret) for the next tasks.

    :param spec: a ClusterSpec, a dict of its fields (templated) or the path of a YAML/TOML/JSON spec
        (relative to the DAG file's folder).
    :param cluster_name: overrides the spec's name (templated); default: the spec's, else the DAG id.
    :param raydog_conn_id: the `raydog` connection: backend, YellowDog key, namespace.
    :param wait_for_workers: also wait until every worker joined Ray (otherwise only the head).
    :param deferrable: wait in the triggerer instead of holding a worker slot.

    The state is pushed to XCom (key `raydog_cluster_state`) as soon as the cluster exists, before any
    node starts, so `RayDogShutdownOperator` and the failure callback can clean up a half-built cluster.
    """

    template_fields: Sequence[str] = ("spec", "cluster_name", "raydog_conn_id")
    template_fields_renderers = {"spec": "json"}
    ui_color = "#c9e4f5"

    def __init__(
        self,
        *,
        spec: SpecArgument = None,
        cluster_name: str | None = None,
        raydog_conn_id: str = RayDogHook.default_conn_name,
        wait_for_workers: bool = True,
        deferrable: bool | None = None,
        poll_interval: float = 2.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.cluster_name = cluster_name
        self.raydog_conn_id = raydog_conn_id
        self.wait_for_workers = wait_for_workers
        self.deferrable = _default_deferrable() if deferrable is None else deferrable
        self.poll_interval = poll_interval
        self._cluster: RayDogCluster | None = None

    @retry_only_infrastructure
    def execute(self, context: Context) -> dict[str, Any]:
        settings = RayDogHook(self.raydog_conn_id).get_conn()
        spec = self.cluster_spec(context, settings)
        ti = context["ti"]
        # Leased where this machine reaches the head: if the DAG run's tasks stop renewing (their worker
        # died, even by SIGKILL), the cluster ends itself once lease_timeout has passed.
        leased, holder = settings.reaches_head(), _holder(context)
        hold = not settings.through_tunnel()  # else taken through the tunnel, below
        with closing(settings.create_backend()) as backend:
            RayDogCluster(spec=spec, backend=backend).log_plan(self.log)
            if spec.reuse_key is not None and self.deferrable:
                # A warm build attaches in seconds, or builds under a lock it cannot hold while deferred.
                self.log.info(
                    "cluster %s has a reuse_key: building (or attaching) in place", spec.cluster_name
                )
            if not self.deferrable or spec.reuse_key is not None:
                self._cluster = RayDogCluster(
                    spec=spec, backend=backend, on_state=lambda s: push_state(ti, s)
                )
                self._cluster.build(
                    wait_for_workers=self.wait_for_workers, lease=leased, lease_holder=holder, hold_lease=hold
                )
                self._cluster.hand_over()  # the lease is fresh for one lease_timeout: the next task renews
                if not hold:
                    with settings.hold_lease(self._cluster.state, holder):  # through the tunnel
                        pass
                return self._built(ti, self._cluster.state)
            # Head only: workers need its address, and are started when the trigger says it is up.
            head_only = spec.model_copy(update={"worker_pools": []})
            self._cluster = RayDogCluster(
                spec=head_only, backend=backend, on_state=lambda s: push_state(ti, s)
            )
            # The head is not up yet: the task resumed after it takes the lease (within build_timeout).
            self._cluster.build(wait_for_head=False, lease=leased, lease_holder=holder, hold_lease=False)
            state = self._cluster.state
        self.log.info("cluster %s: head launched, waiting for it in the triggerer", spec.cluster_name)
        self.defer(
            trigger=RayDogClusterTrigger(
                cluster_state=state.to_dict(),
                raydog_conn_id=self.raydog_conn_id,
                wait_for="head",
                deadline=time.time() + spec.build_timeout.total_seconds(),
                poll_interval=self.poll_interval,
            ),
            method_name="execute_head_ready",
        )

    @retry_only_infrastructure
    def execute_head_ready(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        """Resumed once the head is up (or failed): start the worker pools."""
        settings = RayDogHook(self.raydog_conn_id).get_conn()
        self._fail_unless_ready(settings, event)
        spec = self.cluster_spec(context, settings)
        with closing(settings.create_backend()) as backend:
            state = operations.finish_build(
                event["cluster_state"],
                event["head_private_ip"],
                event["head_public_ip"],
                spec.worker_pools,
                backend,
                wait_for_workers=False,
            )
        push_state(context["ti"], state)
        with settings.hold_lease(state, _holder(context)):
            pass  # taken now that the head is up, fresh for the next task
        if self.wait_for_workers and spec.worker_pools:
            self.defer(
                trigger=RayDogClusterTrigger(
                    cluster_state=state.to_dict(),
                    raydog_conn_id=self.raydog_conn_id,
                    wait_for="workers",
                    deadline=event["deadline"],
                    poll_interval=self.poll_interval,
                ),
                method_name="execute_workers_ready",
            )
        return self._built(context["ti"], state)

    @retry_only_infrastructure
    def execute_workers_ready(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        settings = RayDogHook(self.raydog_conn_id).get_conn()
        self._fail_unless_ready(settings, event)
        return self._built(context["ti"], ClusterState.from_json(event["cluster_state"]))

    def on_kill(self) -> None:
        """The task is being killed while it builds in place: stop what exists (the builder is ours);
        a warm cluster it attached to is only left, to its other runs."""
        if self._cluster is not None:
            self._cluster.leave()

    def cluster_spec(self, context: Context, settings: RayDogConnectionSettings) -> ClusterSpec:
        """The rendered spec, with the connection's defaults and this DAG run's labels."""
        data = self._spec_fields(context)
        defaults = settings.spec_defaults()
        if data.get("backend", defaults["backend"]) != defaults["backend"]:
            raise BuildError(
                f"spec.backend is {data['backend']!r} but connection {self.raydog_conn_id} is for "
                f"{defaults['backend']!r}: the connection decides the backend; remove backend from the spec"
            )
        data = {**defaults, **data}
        if self.cluster_name:
            data["cluster_name"] = self.cluster_name
        data.setdefault("cluster_name", naming.suggest_name(self.dag_id))
        dag_run = context["dag_run"]
        labels = dag_run_labels(dag_run.dag_id, dag_run.run_id)
        if data.get("reuse_key"):
            # A warm cluster outlives this run: not labelled with it, so failure callbacks and the
            # reaper's run-finished check leave it to its leases and idle_ttl.
            labels = {ORCHESTRATOR_LABEL: labels[ORCHESTRATOR_LABEL]}
        data["cluster_labels"] = {**dict(data.get("cluster_labels") or {}), **labels}
        return build_model(ClusterSpec, data)

    def _spec_fields(self, context: Context) -> dict[str, Any]:
        spec = self.spec
        if spec is None:
            return {}
        if isinstance(spec, ClusterSpec):
            return spec.model_dump(exclude_unset=True)
        if isinstance(spec, Mapping):
            return dict(spec)
        path = Path(spec)
        if not path.is_absolute() and self.dag and self.dag.fileloc:
            path = Path(self.dag.fileloc).parent / path
        return load_spec_file(path).model_dump(exclude_unset=True)

    def _fail_unless_ready(self, settings: RayDogConnectionSettings, event: dict[str, Any]) -> None:
        if event["status"] == "ready":
            return
        with closing(settings.create_backend()) as backend:
            operations.shut_down(event["cluster_state"], backend)
        error = BuildTimeoutError if event["status"] == "timeout" else BuildError
        raise error(f"building the cluster failed: {event.get('error')}; everything created was shut down")

    def _built(self, ti: Any, state: ClusterState) -> dict[str, Any]:
        self.log.info("cluster %s is up; Ray dashboard %s", state.cluster_name, state.dashboard_url)
        return push_state(ti, state)


class RayDogAddWorkerPoolOperator(BaseOperator):
    """Add a pool of workers to a running cluster and wait until they joined; returns the new state.

    :param cluster_state: the state of the cluster, e.g. `build.output` (templated).
    :param worker_pool: WorkerPoolSpec fields (dict, templated); `worker_pool_node_count` and
        `worker_pool_internal_name` may also be given directly.
    """

    template_fields: Sequence[str] = (
        "cluster_state",
        "worker_pool",
        "worker_pool_node_count",
        "worker_pool_internal_name",
        "raydog_conn_id",
    )
    template_fields_renderers = {"cluster_state": "json", "worker_pool": "json"}
    ui_color = "#c9e4f5"

    def __init__(
        self,
        *,
        cluster_state: Any,
        worker_pool: WorkerPoolSpec | Mapping[str, Any] | None = None,
        worker_pool_node_count: int | str | None = None,
        worker_pool_internal_name: str | None = None,
        raydog_conn_id: str = RayDogHook.default_conn_name,
        wait_for_workers: bool = True,
        timeout: float = 600.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_state = cluster_state
        self.worker_pool = worker_pool
        self.worker_pool_node_count = worker_pool_node_count
        self.worker_pool_internal_name = worker_pool_internal_name
        self.raydog_conn_id = raydog_conn_id
        self.wait_for_workers = wait_for_workers
        self.timeout = timeout

    @retry_only_infrastructure
    def execute(self, context: Context) -> dict[str, Any]:
        state = state_argument(self.cluster_state)
        settings = RayDogHook(self.raydog_conn_id).get_conn()
        settings.check_state(state)
        with (
            settings.hold_lease(state, _holder(context)),
            closing(settings.create_backend()) as backend,
            settings.watches(
                state, self.log, backend=backend
            ),  # a pool added at the cap is refused: say so first
        ):
            new_state, pool_id = operations.add_worker_pool(
                state,
                self._pool_fields(),
                backend,
                wait_for_workers=self.wait_for_workers,
                timeout=self.timeout,
            )
        self.log.info("worker pool %s added to cluster %s", pool_id, new_state.cluster_name)
        return push_state(context["ti"], new_state)

    def _pool_fields(self) -> dict[str, Any]:
        pool = self.worker_pool
        fields = pool.model_dump(exclude_unset=True) if isinstance(pool, WorkerPoolSpec) else dict(pool or {})
        if self.worker_pool_node_count is not None:
            fields["worker_pool_node_count"] = self.worker_pool_node_count
        if self.worker_pool_internal_name is not None:
            fields["worker_pool_internal_name"] = self.worker_pool_internal_name
        return fields


class RayDogRemoveWorkerPoolOperator(BaseOperator):
    """Remove a pool (by internal name or id) from a running cluster; returns the new state."""

    template_fields: Sequence[str] = ("cluster_state", "worker_pool", "raydog_conn_id")
    template_fields_renderers = {"cluster_state": "json"}
    ui_color = "#c9e4f5"

    def __init__(
        self,
        *,
        cluster_state: Any,
        worker_pool: str,
        raydog_conn_id: str = RayDogHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cluster_state = cluster_state
        self.worker_pool = worker_pool
        self.raydog_conn_id = raydog_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        state = state_argument(self.cluster_state)
        settings = RayDogHook(self.raydog_conn_id).get_conn()
        settings.check_state(state)
        with settings.hold_lease(state, _holder(context)), closing(settings.create_backend()) as backend:
            new_state = operations.remove_worker_pool(state, self.worker_pool, backend)
        self.log.info("worker pool %s removed from cluster %s", self.worker_pool, new_state.cluster_name)
        return push_state(context["ti"], new_state)


class RayDogShutdownOperator(BaseOperator):
    """Shut a cluster down: the teardown. Idempotent, works from partial state, runs after any failure.

    A warm cluster (built with a `reuse_key`) is not shut down: the DAG run's lease on it is released,
    and it stays up for the next run with its key until idle for its `idle_ttl`.

    It is a teardown task by default with trigger rule ALL_DONE, so it also runs when the build failed
    half-way (Airflow's teardown default, ALL_DONE_SETUP_SUCCESS, would skip it and leak the cluster),
    while the DAG run still ends failed. `teardown=False` makes it an ordinary task (trigger rule
    ALL_SUCCESS unless given), e.g. next to a failure callback. When `cluster_state` is empty (the build
    never returned), the partial state the upstream tasks pushed is used.

    Each cluster's post-mortem bundle (`raydog_core.postmortem`), where this machine has it, goes into
    the task's log (its summary and path), into XCom (`raydog_post_mortems`) and behind the task's
    "RayDog post-mortem" button.
    """

    template_fields: Sequence[str] = ("cluster_state", "raydog_conn_id")
    template_fields_renderers = {"cluster_state": "json"}
    ui_color = "#f5d3c9"
    operator_extra_links = (PostMortemLink(),)

    def __init__(
        self,
        *,
        cluster_state: Any = None,
        raydog_conn_id: str = RayDogHook.default_conn_name,
        teardown: bool = True,
        **kwargs: Any,
    ) -> None:
        if teardown:
            kwargs.setdefault("trigger_rule", TriggerRule.ALL_DONE)
        super().__init__(**kwargs)
        self.cluster_state = cluster_state
        self.raydog_conn_id = raydog_conn_id
        # Not on_failure_fail_dagrun: Airflow would then judge the run by the teardown alone, and a run
        # whose job failed would end "success" once the cluster was shut down.
        self.is_teardown = teardown

    def as_teardown(self, *, setups: Any = None, on_failure_fail_dagrun: bool | None = None) -> Any:
        """Airflow's as_teardown, keeping ALL_DONE so a failed build is still cleaned up."""
        super().as_teardown(setups=setups, on_failure_fail_dagrun=on_failure_fail_dagrun)
        self.trigger_rule = TriggerRule.ALL_DONE
        return self

    def execute(self, context: Context) -> list[str]:
        states = self._states(context)
        if not states:
            self.log.info("no cluster state in XCom: no cluster was created, nothing to shut down")
            return []
        settings = RayDogHook(self.raydog_conn_id).get_conn()
        used: list[dict[str, Any]] = []  # node-hours and cost of each cluster shut down here
        bundles: list[
            dict[str, str | None]
        ] = []  # the post-mortem of each cluster, where this machine has it
        link: str | None = None  # the first bundle's copy beyond this machine, else the file here
        with closing(settings.create_backend()) as backend:
            for state in states:
                settings.check_state(state)
                if reuse.is_warm(state):
                    settings.release_lease(state, _holder(context))
                    self.log.info(
                        "cluster %s (%s) is warm: left to the next run with its reuse_key (lease released)",
                        state.cluster_name,
                        state.cluster_id,
                    )
                elif (ended := operations.shut_down(state, backend)) is not None:
                    self.log.info("cluster %s (%s) shut down", state.cluster_name, state.cluster_id)
                    if ended.usage is not None:
                        used.append({"cluster_id": state.cluster_id, **ended.usage.model_dump(mode="json")})
                else:
                    self.log.info(
                        "cluster %s (%s) was already shut down", state.cluster_name, state.cluster_id
                    )
                if (bundle := postmortem.find(state.cluster_id)) is not None:
                    bundles.append(
                        {"cluster_id": state.cluster_id, "path": str(bundle.path), "url": bundle.url}
                    )
                    link = link or bundle.url or bundle.path.as_uri()
                    self.log.info(
                        "post-mortem of cluster %s: %s\n%s", state.cluster_name, bundle.path, bundle.summary
                    )
        context["ti"].xcom_push(key=USAGE_XCOM_KEY, value=used)
        context["ti"].xcom_push(key=POST_MORTEM_XCOM_KEY, value=bundles)
        if link is not None:  # the web server may not see this machine's files: the copy where there is one
            PostMortemLink.persist(context, link)
        return [state.cluster_id for state in states]

    def _states(self, context: Context) -> list[ClusterState]:
        if self.cluster_state not in (None, ""):
            return [state_argument(self.cluster_state)]
        upstream = sorted(self.upstream_task_ids)
        pulled = context["ti"].xcom_pull(task_ids=upstream, key=STATE_XCOM_KEY) if upstream else []
        return unique_states(pulled or [])
