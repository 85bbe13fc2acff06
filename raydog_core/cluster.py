"""RayDogCluster: build, grow, shrink and shut down a Ray cluster, with upstream RayDog's API.

```python
with RayDogCluster(cluster_name="demo") as cluster:      # local backend, default scripts
    cluster.add_worker_pool(worker_pool_node_count=2, worker_pool_internal_name="cpu")
    cluster.build()
    ray.init(address=cluster.ray_address)
```

Built inside a with-block, the cluster is *leased*: this process renews a lease on it in the background,
and if the process dies without shutting it down (even by SIGKILL), the watchdog on the head ends the
cluster once `lease_timeout` has passed (see `raydog_core.leases`). A plain `build()` keeps upstream's
meaning: the cluster lives until someone holding its state shuts it down, or its lifetime ends.
`build(lease=...)` chooses either explicitly; `hold_lease()` takes a lease from any process.

Everything is validated before the first resource exists; any failure during `build()` (a script that
exits, a timeout, Ctrl+C) shuts down what was created and raises a clear error.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from raydog_core import (
    auth,
    build_plan,
    client_auth,
    leases,
    postmortem,
    postmortem_store,
    reuse,
    warm_attach,
)
from raydog_core.backends import Backend, create_backend
from raydog_core.backends.base import NodeInfo, PoolPlan
from raydog_core.client_auth import ClientAuthScope
from raydog_core.cluster_nodes import NodeStarter
from raydog_core.cluster_pools import WorkerPools
from raydog_core.cluster_watches import ClusterWatches
from raydog_core.credentials import YellowDogCredentials
from raydog_core.demand_watch import DemandWatch
from raydog_core.errors import (
    BuildTimeoutError,
    RayDogError,
    ShutdownError,
    SpecError,
    StateError,
)
from raydog_core.lifecycle import ClusterSession
from raydog_core.pricing import ClusterPlan, ClusterUsage
from raydog_core.signals import sigterm_unwinds
from raydog_core.spec import ClusterSpec, WorkerPoolSpec, build_model, check_pool_for_backend
from raydog_core.spend_watch import SpendWatch
from raydog_core.state import ClusterState, LeaseState
from raydog_core.ticker import WatchLogger

log = logging.getLogger("raydog")

StateListener = Callable[[ClusterState], object]  # what it returns is ignored


class RunLogger(Protocol):
    """The logger of a run, whichever orchestrator's: stdlib, Prefect's adapter, Airflow's structlog."""

    def warning(self, msg: str, /, *args: Any) -> Any: ...

    def log(self, level: int, msg: str, /, *args: Any) -> Any: ...


class RayDogCluster:
    """A Ray cluster on the local machine (default) or on YellowDog. See the module docstring."""

    def __init__(
        self,
        *,
        cluster_name: str = "raydog",
        backend: str | Backend | None = None,
        yd_application_key_id: str | None = None,
        yd_application_key_secret: str | None = None,
        yd_platform_api_url: str | None = None,
        spec: ClusterSpec | None = None,
        on_state: StateListener | None = None,
        **spec_fields: Any,
    ) -> None:
        kind = backend if isinstance(backend, str) else getattr(backend, "kind", None)
        if kind is None:
            kind = "yellowdog" if (yd_application_key_id or yd_application_key_secret) else "local"
        if spec is None:
            spec = build_model(ClusterSpec, {"cluster_name": cluster_name, "backend": kind, **spec_fields})
        elif spec_fields:
            raise RayDogError("pass either spec= or individual fields, not both")
        self.spec: ClusterSpec = spec
        self._credentials: YellowDogCredentials | None = None
        if spec.backend == "yellowdog" and not (backend is not None and not isinstance(backend, str)):
            self._credentials = YellowDogCredentials.resolve(
                yd_application_key_id, yd_application_key_secret, yd_platform_api_url
            )
        self._backend_given = backend if backend is not None and not isinstance(backend, str) else None
        self._backend: Backend | None = self._backend_given
        self._on_state = on_state
        self._pools = WorkerPools(spec.cluster_name)  # ids handed out now still find them after a warm rename
        for index, pool_spec in enumerate(spec.worker_pools):
            self._pools.plan(pool_spec, f"worker_pools.{index}", spec.cluster_name)
        self._session: ClusterSession | None = None
        self._state: ClusterState | None = None
        self._built = False
        self._shut_down = False
        self._usage: ClusterUsage | None = None  # measured at shut-down
        self._post_mortem: postmortem.PostMortem | None = None  # written at shut-down
        self._sigterm: Any = None  # while in a with-block
        self._client_auth: ClientAuthScope | None = None  # this process's Ray auth, while built here
        self._lease: leases.LeaseKeeper | None = None  # while this builder holds a lease on its cluster
        # Threads beside a cluster this builder holds ("spend", "nodes", "demand"): until shut_down() or leave().
        self._watches = ClusterWatches()
        self._left = False  # a warm cluster this builder used and left to its other holders
        self._attached = False  # build() found a warm cluster and attached to it

    def __repr__(self) -> str:
        phase = self._state.phase if self._state else "not built"
        return (
            f"RayDogCluster(cluster_name={self.spec.cluster_name!r}, backend={self.spec.backend!r}, {phase})"
        )

    @classmethod
    def from_state(
        cls,
        state: ClusterState | str | dict[str, Any],
        *,
        backend: Backend | None = None,
        yd_application_key_id: str | None = None,
        yd_application_key_secret: str | None = None,
        yd_platform_api_url: str | None = None,
    ) -> RayDogCluster:
        """Re-attach to a built cluster from its saved state, in any process, to grow, shrink or stop it.

        New nodes need the cluster's Ray token, which only the machine that built it keeps (a 0600
        file under $RAYDOG_HOME); growing a token-protected cluster from elsewhere fails clearly.
        """
        if not isinstance(state, ClusterState):
            state = ClusterState.from_json(state)
        spec = ClusterSpec(
            cluster_name=state.cluster_name,
            cluster_namespace=state.cluster_namespace,
            cluster_tag=state.cluster_tag,
            backend=state.backend,
            ray_auth_mode=state.auth_mode,
            head_node_compute_requirement_template_id="(from state)"
            if state.backend == "yellowdog"
            else None,
        )
        # Saved state passed ClusterState's checks; a cluster built before today's stricter label and pool
        # name rules must still be reachable to shut it down, so these are not validated again.
        spec = spec.model_copy(update={"cluster_labels": dict(state.labels)})
        cluster = cls(
            spec=spec,
            backend=backend,
            yd_application_key_id=yd_application_key_id,
            yd_application_key_secret=yd_application_key_secret,
            yd_platform_api_url=yd_platform_api_url,
        )
        if cluster._credentials is not None:
            state.check_platform(cluster._credentials.api_url)  # credentials go only where configured
        cluster._session = ClusterSession.from_state(state, cluster._ensure_backend())
        cluster._state = state.model_copy(deep=True)
        cluster._built = state.phase == "running"
        cluster._shut_down = state.phase == "shut_down"
        cluster._pools = WorkerPools.from_state(state, spec.cluster_name)
        return cluster

    # -- the upstream API -------------------------------------------------------------------------

    def add_worker_pool(self, worker_pool_node_count: int, **pool_fields: Any) -> str:
        """Add a pool of worker nodes, before or after build(); returns the pool's id."""
        self._check_open()
        pool_spec = build_model(
            WorkerPoolSpec, {"worker_pool_node_count": worker_pool_node_count, **pool_fields}
        )
        check_pool_for_backend(pool_spec, self.spec.backend, "add_worker_pool")
        pool = self._pools.plan(pool_spec, "add_worker_pool", self.spec.cluster_name)
        if self._built:
            try:
                self._nodes().launch_pool(pool)
            except BaseException:
                self._pools.remove(pool)
                raise
            self._publish_state()
        return pool.raydog_id

    def plan(self) -> ClusterPlan:
        """What build() would start and what it would cost, checked against the backend; creates nothing.

        Raises SpecError when build() could never succeed (a template that does not exist, a key the
        platform rejects, more GPUs than the machine has); anything that would stop the platform from
        provisioning (an exhausted allowance) is in `problems`.
        """
        self._check_open()
        quote = self._ensure_backend().plan(build_plan.cluster_options(self.spec), self._pool_plans())
        return ClusterPlan.from_quote(self.spec.cluster_name, self.spec.backend, quote)

    def log_plan(self, logger: RunLogger) -> ClusterPlan | None:
        """Log the plan, as the orchestrators do before building. Bad input (SpecError) is raised as
        build() would raise it; a plan the platform cannot answer now is only a warning, not a reason
        not to build."""
        try:
            plan = self.plan()
        except SpecError:
            raise
        except Exception as error:  # noqa: BLE001 - the plan informs; the build decides
            logger.warning("could not plan cluster %s: %s", self.spec.cluster_name, error)
            return None
        logger.log(logging.INFO if plan.ok else logging.WARNING, "%s", plan.table())
        return plan

    @sigterm_unwinds()  # a SIGTERM takes the Ctrl+C path: what was created is shut down first
    def build(
        self,
        head_node_build_timeout: timedelta | float | None = None,
        *,
        wait_for_workers: bool = True,
        wait_for_head: bool = True,
        lease: bool | None = None,
        lease_holder: str | None = None,
        hold_lease: bool = True,
    ) -> tuple[str, str | None]:
        """Start the cluster; returns (head private IP, head public IP or None) once Ray's head is up.

        With `wait_for_workers` (the default) it also waits until every worker has joined Ray, failing
        fast with the node's log if a worker script exits. With `wait_for_head=False` it returns ("", None)
        as soon as the head is launched, in phase "building" and with no worker started (workers need the
        head's address): something else waits for the head and grows the cluster from `state`
        (`raydog_core.operations.finish_build`, used by Airflow's deferrable build).

        `lease`: whether the cluster is leased (see the module docstring); default: inside a with-block,
        where this client can reach the head. This builder then holds the lease until `shut_down()`
        (under the name `lease_holder`, default `builder:<host>:<pid>:<hex>`); with `hold_lease=False`
        the caller takes it instead, within `build_timeout`, e.g. through its SSH tunnel to the head
        (`leases.LeaseKeeper`), which also works where this builder cannot reach the head.
        """
        self._check_open()
        if self._built or self._session is not None:
            raise RayDogError("build() was already called for this cluster")
        timeout = _seconds(head_node_build_timeout, self.spec.build_timeout)
        if self.spec.reuse_key is not None:
            return self._build_or_attach(timeout, wait_for_workers, lease, lease_holder, hold_lease)
        return self._build_new(timeout, wait_for_workers, wait_for_head, lease, lease_holder, hold_lease)

    def _build_or_attach(
        self,
        timeout: float,
        wait_for_workers: bool,
        lease: bool | None,
        lease_holder: str | None,
        hold_lease: bool,
    ) -> tuple[str, str | None]:
        """A cluster with a reuse_key: attach to the live warm one of this key and spec, else build it
        (under a lock, so that parallel runs with one key build one cluster). See `raydog_core.reuse`."""
        if lease is False:
            raise SpecError(
                "reuse_key",
                "a warm cluster is always leased: its leases and idle_ttl are how it ends",
                "remove build(lease=False), or the reuse_key",
            )
        key = self._become_warm()
        backend = self._ensure_backend()
        holder = lease_holder or leases.holder_name("builder")

        def build() -> ClusterState:
            self._build_new(timeout, wait_for_workers, True, True, holder, hold_lease)
            return self.state  # its head's addresses are the ones _build_new returns

        warm = warm_attach.WarmAttach(
            key, backend, self.spec, self._api_url(), lambda s: self._adopt_warm(s, holder, hold_lease)
        )
        warm.attach_or_build(timeout, build)
        return self.state.head.private_ip or "", self.state.head.public_ip

    def _become_warm(self) -> reuse.WarmKey:
        """Name and label the cluster after its reuse key and spec; pools take the new name."""
        key, self.spec = warm_attach.warm_spec(self.spec, [p.spec for p in self._pools], self._api_url())
        self._pools.rename(key.cluster_name)
        return key

    def _adopt_warm(self, state: ClusterState, holder: str, hold_lease: bool) -> ClusterState:
        """Become a client of the warm cluster `state` names: its head is where its backend says, and its
        watchdog grants this client a lease; returns this builder's copy of the state. Raises, with this
        builder unchanged, where not."""
        session = ClusterSession.from_state(state, self._ensure_backend())
        planned = self._pools
        try:
            session.require_token()
            head = session.vouched_head(state)
            # the warm cluster's state, with this run's runtime_env (each driver's own: not matched)
            self._session = session
            self._state = state.model_copy(deep=True, update={"runtime_env": self.spec.runtime_env})
            self._pools = WorkerPools.from_state(self._state, planned.planned_name)
            if hold_lease:
                session.lease_client(head).renew(
                    holder, self._lease_terms().timeout_s or leases.DEFAULT_TTL_S
                )
                self._lease = self._lease_keeper(holder).take()
        except (RayDogError, leases.LeaseError):
            self._session, self._state, self._lease = None, None, None
            self._pools = planned
            raise
        self._built = self._attached = True
        self._point_process_at_cluster()
        self._watches.watch_nodes(session, self.spec.cluster_name)
        return self._state

    def _build_new(
        self,
        timeout: float,
        wait_for_workers: bool,
        wait_for_head: bool,
        lease: bool | None,
        lease_holder: str | None,
        hold_lease: bool,
    ) -> tuple[str, str | None]:
        deadline = time.monotonic() + timeout
        backend = self._ensure_backend()
        spec = self.spec
        backend.check_plan(build_plan.cluster_options(spec), self._pool_plans())  # GPUs, say: before any node
        postmortem_store.check_settings()  # where its post-mortem goes, before it has one
        options = build_plan.capped_options(spec, self.plan() if spec.max_cost is not None else None)
        leased, terms = build_plan.keep_alive(
            spec, lease, self._sigterm is not None, backend.capabilities, held_elsewhere=not hold_lease
        )
        try:
            self._session = ClusterSession.open(
                backend, options, spec.ray_auth_mode, lease=terms, preload_modules=spec.worker_preload_modules
            )
            self._state = build_plan.initial_state(spec, self._session, self._api_url())
            self._publish_state()  # partial state first: a teardown elsewhere can clean up from here
            nodes = self._nodes()
            observability_ip = nodes.start_observability(deadline) if spec.enable_observability else None
            if leased and hold_lease:
                # Taken as soon as the head's watchdog answers, renewed until shut_down().
                self._lease = self._lease_keeper(lease_holder or leases.holder_name("builder"))
                self._lease.start()
            head = nodes.start_head(deadline, observability_ip, wait=wait_for_head)
            if head is None:
                return "", None
            if self._lease is not None:
                self._lease.wait_taken()
            for pool in self._pools:
                nodes.launch_pool(pool)
            self._publish_state()
            if wait_for_workers:
                self.wait_for_nodes(timeout=max(deadline - time.monotonic(), 0.0))
        except BaseException as error:
            self._abort_build(error)
            if isinstance(error, TimeoutError) and not isinstance(error, BuildTimeoutError):
                raise BuildTimeoutError(str(error)) from None
            raise
        self._built = True
        self._state.phase = "running"
        self._publish_state()
        self._point_process_at_cluster()
        self.watch_spend()
        self._watches.watch_nodes(self._require_session(), self.spec.cluster_name)
        log.info(
            "cluster %s is up: head %s, dashboard %s",
            self.spec.cluster_name,
            self.ray_address,
            self.dashboard_url,
        )
        return head.private_ip or "", head.public_ip

    def remove_worker_pool(self, worker_pool_id: str) -> None:
        """Remove a pool by the id add_worker_pool returned (or the backend's id); its nodes leave Ray."""
        self._check_open()
        pool = self._pools.find(worker_pool_id)
        if pool.backend_id is not None:
            self._ensure_backend().remove_pool(self._cluster_id(), pool.backend_id)
        self._pools.remove(pool)
        self._publish_state()

    def remove_worker_pool_by_internal_name(self, internal_name: str) -> None:
        self.remove_worker_pool(self._pools.named(internal_name).raydog_id)

    def get_worker_pool_internal_name_by_id(self, worker_pool_id: str) -> str | None:
        try:
            return self._pools.find(worker_pool_id).internal_name
        except RayDogError:
            return None

    @property
    def worker_pool_ids(self) -> list[str]:
        return [p.raydog_id for p in self._pools if p.backend_id is not None]

    @property
    def worker_pool_internal_names(self) -> list[str]:
        return [p.internal_name for p in self._pools]

    def shut_down(self) -> ClusterUsage | None:
        """Stop everything this cluster started. Idempotent; keeps going past failures, then reports them.

        Returns what the cluster used (node-hours and cost, from the backend's records; also written to
        `state.usage`), or None when nothing was built or it could not be measured.
        """
        return self._end("shut down by its builder")

    def _end(self, reason: str) -> ClusterUsage | None:
        if self._shut_down:
            return self._usage
        self._shut_down = True
        if self._session is None:
            return None
        self.release_lease_keeper()  # the cluster goes now: nothing to release
        self._watches.stop()
        self._release_process()
        failures = self._session.shut_down(self._backend_pool_ids(), reason)
        self._post_mortem = postmortem.find(self._session.cluster_id)
        usage = None
        if self._state is not None:
            self._state.phase = "shut_down"
            usage = self._usage = self._session.usage(self._state)
            self._publish_state()
        if self._backend_given is None and self._backend is not None:
            self._backend.close()
        log.info("cluster %s shut down", self.spec.cluster_name)
        if failures:
            raise ShutdownError(failures)
        return usage

    def leave(self) -> ClusterUsage | None:
        """Stop using a warm cluster (one with a reuse_key) and leave it to its other holders: this
        builder's lease is released, and the cluster ends by itself once idle for its idle_ttl.
        `shut_down()` ends it for everyone. Idempotent; a cluster that is not warm is shut down (and
        what it used returned, as `shut_down()` does)."""
        if not self.is_warm or not self._built or self._shut_down:
            return self.shut_down()
        if self._left:
            return None
        self._left = True
        keeper, self._lease = self._lease, None
        if keeper is not None:
            keeper.stop(release=True)
        self._watches.stop()
        self._release_process()
        if self._backend_given is None and self._backend is not None:
            self._backend.close()
        log.info("left warm cluster %s: it stays up for its next run", self.spec.cluster_name)
        return None

    @property
    def post_mortem(self) -> postmortem.PostMortem | None:
        """The cluster's post-mortem bundle, once it is shut down (`raydog_core.postmortem`)."""
        return self._post_mortem

    @property
    def attached(self) -> bool:
        """Whether build() attached to a warm cluster an earlier run built, instead of building."""
        return self._attached

    @property
    def is_warm(self) -> bool:
        """Whether this is a warm cluster, shared by the runs of one reuse_key (from its label)."""
        return reuse.REUSE_LABEL in self.spec.cluster_labels

    def hold_lease(self, holder: str | None = None) -> leases.LeaseKeeper:
        """Take a lease on this cluster now and renew it in the background until `stop()` (or use it as
        a context manager); any process holding the cluster's state and token can. A cluster built with
        leases ends by itself once no lease has been renewed for its `lease_timeout`. Holders that
        share a name (the tasks of one DAG run) renew one lease."""
        return self._lease_keeper(holder or leases.holder_name("client")).take()

    def can_hold_lease(self) -> bool:
        """Whether this client reaches the head directly, so that `build(lease=True)` works here."""
        return self._ensure_backend().capabilities.nodes_reachable

    def lease_view(self) -> dict[str, Any]:
        """The leases on this cluster as its head's watchdog sees them: holders and seconds left, idle
        seconds, seconds until the cluster ends itself."""
        self._lease_terms()
        session = self._require_session()
        return session.lease_client(session.vouched_head(self.state)).view()

    def watch_spend(self, logger: WatchLogger | None = None) -> SpendWatch | None:
        """For a capped cluster (max_node_hours / max_cost): log a warning at 80 % of the cap and an error
        when it is used up, into `logger` (default RayDog's; an orchestrator passes its run's), until
        shut_down(). build() starts it with RayDog's logger; None for a cluster without a cap."""
        if self.spec.max_node_hours is None and self.spec.max_cost is None:
            return None
        return self._watches.watch_spend(self._require_session(), self.spec.cluster_name, logger)

    def watch_demand(
        self, logger: WatchLogger | None = None, dashboard_url: str | None = None
    ) -> DemandWatch:
        """Explain, in `logger` (default RayDog's; an orchestrator passes its run's), Ray work that no node
        of this cluster can run (`raydog_core.demand_watch`), until shut_down(). `dashboard_url`: this
        client's way to the head's dashboard (an SSH tunnel's); default the head's own address, where
        this client reaches nodes."""
        session = self._require_session()
        url = dashboard_url or self.dashboard_url
        return self._watches.watch_demand(session, url, self.spec.cluster_name, logger)

    def hand_over(self) -> None:
        """This process stops holding the cluster, which goes on for whoever holds its state next (the
        next task of an Airflow DAG run): the lease is no longer renewed here (it holds for one more
        lease_timeout, for the next holder to take over) and the watches beside it stop."""
        self.release_lease_keeper()
        self._watches.stop()

    def release_lease_keeper(self) -> None:
        """Stop renewing this builder's lease without releasing it: it holds for one more lease_timeout,
        for the next holder of the same name (the next task of a DAG run) to take over."""
        keeper, self._lease = self._lease, None
        if keeper is not None:
            keeper.stop(release=False)

    def _lease_keeper(self, holder: str) -> leases.LeaseKeeper:
        session = self._require_session()
        state = self.state
        return leases.LeaseKeeper(
            lambda: session.lease_client(session.vouched_head(state)), holder, self._lease_terms()
        )

    def _lease_terms(self) -> LeaseState:
        terms = self.state.lease
        if terms is None or self.state.head.lease_port is None:
            raise RayDogError(
                f"cluster {self.spec.cluster_name} was built without leases (build(lease=True), or inside "
                "a with-block, gives it a lease endpoint)"
            )
        return terms

    def save_state_to_json(self) -> str:
        return self.state.to_json()

    def save_state_to_json_file(self, file_name: str | Path) -> None:
        self.state.write(file_name)

    def __enter__(self) -> RayDogCluster:
        self._sigterm = sigterm_unwinds()  # a SIGTERM in the block ends it, so __exit__ shuts down
        self._sigterm.__enter__()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self.leave()  # a warm cluster stays for the next run; any other is shut down
        except Exception:
            if exc is None:
                raise
            log.exception(
                "shut-down of cluster %s failed (the error in the with-block is raised)",
                self.spec.cluster_name,
            )
        finally:
            sigterm, self._sigterm = self._sigterm, None
            if sigterm is not None:
                sigterm.__exit__(exc_type, exc, tb)  # the process ends here if a SIGTERM ended the block

    # -- what users need once it is up --------------------------------------------------------------

    @property
    def state(self) -> ClusterState:
        if self._state is None:
            raise StateError("the cluster has no state yet: call build() first")
        return self._state

    @property
    def cluster_id(self) -> str | None:
        return self._session.cluster_id if self._session else None

    @property
    def ray_address(self) -> str | None:
        return self._state.ray_address if self._state else None

    @property
    def dashboard_url(self) -> str | None:
        return self._state.dashboard_url if self._state else None

    @property
    def client_address(self) -> str | None:
        return self._state.client_address if self._state else None

    @property
    def log_dir(self) -> str | None:
        return self._session.handle.log_dir if self._session else None

    def head_node(self) -> NodeInfo:
        """The running head as the backend reports it: the address to send the cluster's token to."""
        return self._require_session().vouched_head(self.state)

    def client_environment(self) -> dict[str, str]:
        """Environment variables a Ray client needs for this cluster (auth mode and token file)."""
        return auth.client_environment(self._cluster_id(), self.spec.ray_auth_mode)

    def nodes(self) -> list[NodeInfo]:
        """Every node with its status, from the backend (the truth, not Ray's view)."""
        return self._ensure_backend().list_nodes(self._cluster_id())

    def wait_for_nodes(
        self, count: int | None = None, timeout: float = 120.0, *, replace_failed: bool = True
    ) -> int:
        """Wait until `count` nodes (default: head + every worker) are alive in Ray; returns how many are.

        A worker whose script exits is replaced once (`replace_failed`; see docs/decisions.md); a second
        failure, a failed head, or any failure with `replace_failed=False` fails the wait at once with
        the node's log tail.
        """
        expected = count if count is not None else 1 + self._pools.node_count()
        return self._nodes().wait_in_ray(expected, timeout, replace_failed)

    # -- internals ----------------------------------------------------------------------------------

    def _ensure_backend(self) -> Backend:
        if self._backend is None:
            self._backend = create_backend(
                self.spec.backend, self._credentials, placement=self.spec.node_placement
            )
        return self._backend

    def _abort_build(self, error: BaseException) -> None:
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
        log.error("build of cluster %s %s; shutting down what was created", self.spec.cluster_name, reason)
        try:
            self._end(f"build {reason}: {type(error).__name__}: {error}")
        except Exception:
            log.exception("clean-up after the failed build of %s reported errors", self.spec.cluster_name)

    def _publish_state(self) -> None:
        if self._state is None:
            return
        self._state.pools = [p for p in self._state.pools if p.role != "worker"] + self._pools.states()
        self._state.next_pool_index = self._pools.next_index
        if self._on_state is not None:
            self._on_state(self._state.model_copy(deep=True))

    def _point_process_at_cluster(self) -> None:
        """Let `ray.init(address=cluster.ray_address)` just work in this process (same user, same machine)
        until shut-down, which puts the process's Ray auth settings back as they were.

        Skipped when the process already uses another auth mode that RayDog did not set.
        """
        env = self.client_environment()
        current = os.environ.get("RAY_AUTH_MODE")
        if current in (None, env["RAY_AUTH_MODE"]) or client_auth.any_open():
            self._client_auth = ClientAuthScope(env).open()

    def _release_process(self) -> None:
        scope, self._client_auth = self._client_auth, None
        if scope is not None:
            scope.close()

    def _backend_pool_ids(self) -> list[str]:
        return [p.pool_id for p in self._state.pools] if self._state else []

    def _pool_plans(self) -> list[PoolPlan]:
        return build_plan.pool_plans(self.spec, self._pools)

    def _cluster_id(self) -> str:
        return self._require_session().cluster_id

    def _nodes(self) -> NodeStarter:
        """Starts nodes of the cluster as this builder holds it now."""
        return NodeStarter(self.spec, self._require_session(), self.state, self._pools, self._publish_state)

    def _api_url(self) -> str | None:
        """The YellowDog platform this builder's credentials are for; None on any other backend."""
        return self._credentials.api_url if self._credentials else None

    def _require_session(self) -> ClusterSession:
        if self._session is None:
            raise RayDogError("the cluster has not been built: call build() first")
        return self._session

    def _check_open(self) -> None:
        if self._shut_down:
            raise RayDogError(f"cluster {self.spec.cluster_name} has been shut down")
        if self._left:
            raise RayDogError(f"this client has left warm cluster {self.spec.cluster_name}")


def _seconds(value: timedelta | float | None, default: timedelta) -> float:
    if value is None:
        return default.total_seconds()
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise SpecError(
            "head_node_build_timeout", f"must be positive, got {value}", "e.g. timedelta(minutes=5)"
        )
    return seconds
