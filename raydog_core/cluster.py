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

import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

from raydog_core import (
    auth,
    client_auth,
    leases,
    naming,
    postmortem,
    postmortem_store,
    reuse,
    warm_files,
)
from raydog_core.backends import Backend, create_backend
from raydog_core.backends.base import (
    ClusterHandle,
    ClusterOptions,
    NodeInfo,
    NodeLaunch,
    NodeRole,
    PoolPlan,
    node_failure,
)
from raydog_core.client_auth import ClientAuthScope
from raydog_core.credentials import YellowDogCredentials
from raydog_core.demand_watch import DemandWatch
from raydog_core.errors import (
    BuildTimeoutError,
    ClusterNameTakenError,
    NodeFailedError,
    RayDogError,
    ShutdownError,
    SpecError,
    StateError,
    WarmClusterRaceError,
)
from raydog_core.lifecycle import ClusterSession, head_state, poll_until
from raydog_core.node_watch import NodeWatch
from raydog_core.pricing import ClusterPlan, ClusterUsage, spend_cap_hours
from raydog_core.scripts import load_script
from raydog_core.signals import sigterm_unwinds
from raydog_core.spec import (
    ClusterSpec,
    NodeResources,
    WorkerPoolSpec,
    build_model,
    check_pool_for_backend,
)
from raydog_core.spend_watch import SpendWatch
from raydog_core.state import ClusterState, LeaseState, ObservabilityState, PoolState
from raydog_core.ticker import Watch, WatchLogger

log = logging.getLogger("raydog")

StateListener = Callable[[ClusterState], object]  # what it returns is ignored


class RunLogger(Protocol):
    """The logger of a run, whichever orchestrator's: stdlib, Prefect's adapter, Airflow's structlog."""

    def warning(self, msg: str, /, *args: Any) -> Any: ...

    def log(self, level: int, msg: str, /, *args: Any) -> Any: ...


@dataclass
class _Pool:
    """A worker pool as the builder tracks it: RayDog's id, the backend's id once provisioned."""

    raydog_id: str
    index: int
    spec: WorkerPoolSpec
    backend_id: str | None = None
    node_ids: list[str] = field(default_factory=list)
    where: str = "add_worker_pool"  # how errors name it: "worker_pools.0" for a pool of the spec

    @property
    def internal_name(self) -> str:
        return self.spec.worker_pool_internal_name or self.raydog_id


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
        self._pools: dict[str, _Pool] = {}
        self._next_pool_index = 1
        for index, pool_spec in enumerate(spec.worker_pools):
            self._plan_pool(pool_spec, f"worker_pools.{index}")
        self._session: ClusterSession | None = None
        self._state: ClusterState | None = None
        self._built = False
        self._shut_down = False
        self._usage: ClusterUsage | None = None  # measured at shut-down
        self._post_mortem: postmortem.PostMortem | None = None  # written at shut-down
        self._sigterm: Any = None  # while in a with-block
        self._client_auth: ClientAuthScope | None = None  # this process's Ray auth, while built here
        self._lease: leases.LeaseKeeper | None = None  # while this builder holds a lease on its cluster
        # Threads beside a cluster this builder holds, by name ("spend", "nodes", "demand"): until shut_down()
        # or leave().
        self._watches: dict[str, Watch] = {}
        self._planned_name = spec.cluster_name  # pool ids handed out before a warm build renamed them
        self._left = False  # a warm cluster this builder used and left to its other holders
        self._attached = False  # build() found a warm cluster and attached to it
        self._replacements: dict[str, str] = {}  # worker started in place of one that failed -> that one

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
        cluster._adopt_pools(state)
        return cluster

    # -- the upstream API -------------------------------------------------------------------------

    def add_worker_pool(self, worker_pool_node_count: int, **pool_fields: Any) -> str:
        """Add a pool of worker nodes, before or after build(); returns the pool's id."""
        self._check_open()
        pool_spec = build_model(
            WorkerPoolSpec, {"worker_pool_node_count": worker_pool_node_count, **pool_fields}
        )
        check_pool_for_backend(pool_spec, self.spec.backend, "add_worker_pool")
        pool = self._plan_pool(pool_spec, "add_worker_pool")
        if self._built:
            try:
                self._launch_pool(pool)
            except BaseException:
                del self._pools[pool.raydog_id]
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
        quote = self._ensure_backend().plan(self._cluster_options(), self._pool_plans())
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
        with reuse.creation_lock(key, timeout):
            state = reuse.warm_state(key, backend)
            attached = state is not None and self._attach_warm(key, state, holder, hold_lease)
            if state is None and self._attach_elsewhere(key, holder, hold_lease, timeout):
                warm_files.remember(self.state)  # the next run on this machine finds it here
                attached = True
            if attached:
                log.info("attached to warm cluster %s (%s)", self.spec.cluster_name, self.cluster_id)
                return self.state.head.private_ip or "", self.state.head.public_ip
            try:
                result = self._build_new(timeout, wait_for_workers, True, True, holder, hold_lease)
            except ClusterNameTakenError as error:  # another machine got there first: nothing is ours
                raise WarmClusterRaceError(
                    f"warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}) was created by another "
                    f"machine as this run tried to: retry, and the run attaches to it ({error})"
                ) from None
            warm_files.remember(self.state)
        return result

    def _become_warm(self) -> reuse.WarmKey:
        """Name and label the cluster after its reuse key and spec; pools take the new name."""
        platform = self._credentials.api_url if self._credentials else None
        key = reuse.WarmKey.of(self.spec, [p.spec for p in self._pools.values()], platform)
        labels = {**self.spec.cluster_labels, reuse.REUSE_LABEL: key.label}
        self.spec = self.spec.model_copy(update={"cluster_name": key.cluster_name, "cluster_labels": labels})
        pools = list(self._pools.values())
        for pool in pools:
            pool.raydog_id = key.cluster_name + naming.worker_pool_suffix(pool.index)
        self._pools = {pool.raydog_id: pool for pool in pools}
        return key

    def _attach_warm(self, key: reuse.WarmKey, state: ClusterState, holder: str, hold_lease: bool) -> bool:
        """Use the warm cluster `state` names if its head runs where the state says and its watchdog
        grants this client a lease; otherwise shut it down (it is dead or ending) and say False."""
        try:
            self._adopt_warm(state, holder, hold_lease)
        except (RayDogError, leases.LeaseError) as error:
            reuse.replace_dead(key, state, self._ensure_backend(), str(error))
            return False
        return True

    def _attach_elsewhere(self, key: reuse.WarmKey, holder: str, hold_lease: bool, timeout: float) -> bool:
        """Use the warm cluster of this key that another machine built (no state of it is here): found
        on the platform, waited for while its head starts (within the build timeout), reached with the
        token this machine was given for it ($RAYDOG_RAY_AUTH_TOKEN, the builder's). A failure here is
        raised, never a reason to shut that cluster down: it is someone else's, and may be healthy."""
        backend = self._ensure_backend()
        record = reuse.live_record(key, backend, self.spec.cluster_namespace)
        if record is None:
            return False
        api_url = self._credentials.api_url if self._credentials else None
        state = poll_until(
            lambda: reuse.state_from_platform(record, backend, self.spec, api_url),
            time.monotonic() + timeout,
            lambda: BuildTimeoutError(
                f"warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}), built from another machine, "
                f"has no running head after {timeout:.0f} s (build_timeout)"
            ),
        )
        brought_token = state.auth_mode == "token" and auth.load_token(state.cluster_id) is None
        if brought_token:
            token = auth.shared_token()
            if token is None:
                raise RayDogError(
                    f"warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}) is running, built from "
                    f"another machine, and this machine has no token for it: set {auth.TOKEN_ENV_VAR} to the "
                    "token its builder used (kept in a secrets manager), as on the builder's machine"
                )
            auth.save_token(state.cluster_id, token)
        try:
            self._adopt_warm(state, holder, hold_lease)
        except (RayDogError, leases.LeaseError) as error:
            if brought_token:
                auth.delete_token(state.cluster_id)
            raise RayDogError(
                f"could not attach to warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}), built "
                f"from another machine: {error}; if {auth.TOKEN_ENV_VAR} is not its builder's token, set it "
                "to that one (the cluster is left as it is)"
            ) from None
        return True

    def _adopt_warm(self, state: ClusterState, holder: str, hold_lease: bool) -> None:
        """Become a client of the warm cluster `state` names: its head is where its backend says, and its
        watchdog grants this client a lease. Raises, with this builder unchanged, where not."""
        session = ClusterSession.from_state(state, self._ensure_backend())
        planned = (self._pools, self._next_pool_index)
        try:
            session.require_token()
            head = session.vouched_head(state)
            # the warm cluster's state, with this run's runtime_env (each driver's own: not matched)
            self._session = session
            self._state = state.model_copy(deep=True, update={"runtime_env": self.spec.runtime_env})
            self._adopt_pools(self._state)
            if hold_lease:
                session.lease_client(head).renew(
                    holder, self._lease_terms().timeout_s or leases.DEFAULT_TTL_S
                )
                self._lease = self._lease_keeper(holder).take()
        except (RayDogError, leases.LeaseError):
            self._session, self._state, self._lease = None, None, None
            self._pools, self._next_pool_index = planned
            raise
        self._built = self._attached = True
        self._point_process_at_cluster()
        self._watch_nodes()

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
        backend.check_plan(self._cluster_options(), self._pool_plans())  # e.g. GPUs, before any node
        postmortem_store.check_settings()  # where its post-mortem goes, before it has one
        spec = self.spec
        options = dataclasses.replace(
            self._cluster_options(),
            max_node_hours=spend_cap_hours(
                spec.max_node_hours, spec.max_cost, self.plan() if spec.max_cost is not None else None
            ),
        )
        leased = leases.choose_leased(
            lease,
            self._sigterm is not None,
            backend.capabilities,
            self.spec,
            held_elsewhere=not hold_lease,
        )
        head_script = load_script(self.spec.head_node_ray_start_script, "head")
        terms = leases.without_watchdog(
            leases.terms_for(self.spec, leased), head_script, self.spec.cluster_name
        )
        leased = leased and terms is not None
        try:
            self._session = ClusterSession.open(backend, options, self.spec.ray_auth_mode, lease=terms)
            self._state = self._initial_state(self._session.handle)
            self._publish_state()  # partial state first: a teardown elsewhere can clean up from here
            observability_ip = self._start_observability(deadline) if self.spec.enable_observability else None
            if leased and hold_lease:
                # Taken as soon as the head's watchdog answers, renewed until shut_down().
                self._lease = self._lease_keeper(lease_holder or leases.holder_name("builder"))
                self._lease.start()
            head = self._start_head(deadline, observability_ip, wait=wait_for_head)
            if head is None:
                return "", None
            if self._lease is not None:
                self._lease.wait_taken()
            for pool in self._pools.values():
                self._launch_pool(pool)
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
        self._watch_nodes()
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
        pool = self._find_pool(worker_pool_id)
        if pool.backend_id is not None:
            self._ensure_backend().remove_pool(self._cluster_id(), pool.backend_id)
        del self._pools[pool.raydog_id]
        self._publish_state()

    def remove_worker_pool_by_internal_name(self, internal_name: str) -> None:
        for pool in self._pools.values():
            if pool.internal_name == internal_name:
                self.remove_worker_pool(pool.raydog_id)
                return
        known = sorted(p.internal_name for p in self._pools.values())
        raise RayDogError(f"no worker pool named {internal_name!r}; pools: {known}")

    def get_worker_pool_internal_name_by_id(self, worker_pool_id: str) -> str | None:
        try:
            return self._find_pool(worker_pool_id).internal_name
        except RayDogError:
            return None

    @property
    def worker_pool_ids(self) -> list[str]:
        return [p.raydog_id for p in self._pools.values() if p.backend_id is not None]

    @property
    def worker_pool_internal_names(self) -> list[str]:
        return [p.internal_name for p in self._pools.values()]

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
        self._stop_watches()
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
        self._stop_watches()
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
        session = self._require_session()
        cluster_id = session.cluster_id
        watch = SpendWatch(lambda: session.backend.spend(cluster_id), self.spec.cluster_name, logger or log)
        self._start_watch("spend", watch)
        return watch

    def watch_demand(
        self, logger: WatchLogger | None = None, dashboard_url: str | None = None
    ) -> DemandWatch:
        """Explain, in `logger` (default RayDog's; an orchestrator passes its run's), Ray work that no node
        of this cluster can run (`raydog_core.demand_watch`), until shut_down(). `dashboard_url`: this
        client's way to the head's dashboard (an SSH tunnel's); default the head's own address, where
        this client reaches nodes."""
        session = self._require_session()
        url = dashboard_url or self.dashboard_url
        if url is None:
            raise RayDogError("the cluster has no dashboard this client can reach: pass dashboard_url")
        watch = DemandWatch.on_dashboard(
            url, session.token, session.nodes, self.spec.cluster_name, logger or log
        )
        self._start_watch("demand", watch)
        return watch

    def _watch_nodes(self) -> None:
        """Where listing heals the cluster (a reclaimed worker's task waiting for a node on YellowDog),
        list it now and then while this builder holds it: until shut_down() or leave()."""
        session = self._require_session()
        if session.backend.capabilities.heals_when_listing and "nodes" not in self._watches:
            self._start_watch("nodes", NodeWatch(session.nodes, self.spec.cluster_name))

    def _start_watch(self, name: str, watch: Watch) -> None:
        self._stop_watches(name)
        watch.start()
        self._watches[name] = watch

    def _stop_watches(self, *names: str) -> None:
        """The named watches, or all of them."""
        for name in names or list(self._watches):
            watch = self._watches.pop(name, None)
            if watch is not None:
                watch.stop()

    def hand_over(self) -> None:
        """This process stops holding the cluster, which goes on for whoever holds its state next (the
        next task of an Airflow DAG run): the lease is no longer renewed here (it holds for one more
        lease_timeout, for the next holder to take over) and the watches beside it stop."""
        self.release_lease_keeper()
        self._stop_watches()

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
        expected = count if count is not None else 1 + sum(len(p.node_ids) for p in self._pools.values())
        session = self._require_session()
        alive = 0

        def look() -> int | None:
            nonlocal alive
            for failed in session.failed_nodes(self._current_node_ids()):
                if not replace_failed:
                    raise node_failure(failed)
                self._replace_failed_worker(failed)
            alive = session.alive_in_ray(self._state.head.node_id if self._state else None)
            return alive if alive >= expected else None

        def timed_out() -> BuildTimeoutError:
            return BuildTimeoutError(
                f"only {alive} of {expected} nodes of cluster {self.spec.cluster_name} joined Ray "
                f"within {timeout:.0f} s; node logs: {self.log_dir or 'see the backend'}"
            )

        return poll_until(look, time.monotonic() + timeout, timed_out)

    # -- internals ----------------------------------------------------------------------------------

    def _adopt_pools(self, state: ClusterState) -> None:
        """Track the worker pools a saved state names, as if this builder had added them."""
        self._pools = {}
        self._next_pool_index = 1
        for pool_state in state.pools:
            if pool_state.role != "worker":
                continue
            index = _pool_index(pool_state.raydog_id, state.cluster_name) or self._next_pool_index
            pool = _Pool(
                raydog_id=pool_state.raydog_id or pool_state.pool_id,
                index=index,
                spec=WorkerPoolSpec(worker_pool_node_count=max(pool_state.node_count, 1)).model_copy(
                    update={"worker_pool_internal_name": pool_state.internal_name}
                ),
                backend_id=pool_state.pool_id,
                node_ids=list(pool_state.node_ids),
            )
            self._pools[pool.raydog_id] = pool
            self._next_pool_index = max(self._next_pool_index, index + 1)
        self._next_pool_index = max(self._next_pool_index, state.next_pool_index)

    def _plan_pool(self, pool_spec: WorkerPoolSpec, where: str) -> _Pool:
        name = pool_spec.worker_pool_internal_name
        if name and any(p.internal_name == name for p in self._pools.values()):
            raise SpecError(
                f"{where}.worker_pool_internal_name",
                f"{name!r} is already used by another pool",
                "give every pool its own name",
            )
        if self._next_pool_index > naming.MAX_WORKER_POOLS:
            raise SpecError(where, f"at most {naming.MAX_WORKER_POOLS} pools per cluster")
        raydog_id = self.spec.cluster_name + naming.worker_pool_suffix(self._next_pool_index)
        pool = _Pool(raydog_id=raydog_id, index=self._next_pool_index, spec=pool_spec, where=where)
        self._next_pool_index += 1
        self._pools[raydog_id] = pool
        return pool

    def _ensure_backend(self) -> Backend:
        if self._backend is None:
            self._backend = create_backend(
                self.spec.backend, self._credentials, placement=self.spec.node_placement
            )
        return self._backend

    def _cluster_options(self) -> ClusterOptions:
        spec = self.spec
        return ClusterOptions(
            name=spec.cluster_name,
            namespace=spec.cluster_namespace,
            tag=spec.cluster_tag,
            labels=spec.cluster_labels,
            lifetime=spec.cluster_lifetime,
            gpu_ids=spec.gpu_ids,
            head_on_spot_allowed=spec.head_node_allow_spot,
        )

    def _pool_plans(self) -> list[PoolPlan]:
        """Every node build() starts, head first (the observability node asks for no GPU)."""
        spec = self.spec
        plans = [
            PoolPlan(
                "head_node_resources",
                1,
                spec.head_node_resources,
                NodeRole.HEAD,
                "head",
                spec.head_yellowdog(),
            )
        ]
        if spec.enable_observability:
            plans.append(
                PoolPlan(
                    "observability_node",
                    1,
                    NodeResources(num_gpus=0),
                    NodeRole.OBSERVABILITY,
                    "observability",
                    spec.observability_yellowdog(),
                )
            )
        for pool in self._pools.values():
            plans.append(
                PoolPlan(
                    f"{pool.where}.worker_node_resources",
                    pool.spec.worker_pool_node_count,
                    pool.spec.worker_node_resources,
                    NodeRole.WORKER,
                    pool.where if pool.where != "add_worker_pool" else pool.internal_name,
                    pool.spec.yellowdog,
                )
            )
        return plans

    def _initial_state(self, handle: ClusterHandle) -> ClusterState:
        spec = self.spec
        return ClusterState(
            backend=spec.backend,
            cluster_id=handle.cluster_id,
            cluster_name=spec.cluster_name,
            cluster_namespace=spec.cluster_namespace,
            cluster_tag=spec.cluster_tag,
            labels=spec.cluster_labels,
            api_url=self._credentials.api_url if self._credentials else None,
            runtime_env=spec.runtime_env,
            log_dir=handle.log_dir,
            auth_mode=spec.ray_auth_mode,
            head=head_state(handle.ports, leased=bool(self._session and self._session.lease)),
            lease=self._session.lease if self._session else None,
            observability=ObservabilityState(
                prometheus_port=handle.observability.prometheus,
                grafana_port=handle.observability.grafana,
            )
            if spec.enable_observability
            else None,
        )

    def _node_env(self, role: NodeRole, head_ip: str | None = None) -> dict[str, str]:
        session = self._require_session()
        with_observability = self._state is not None and self._state.observability is not None
        return session.node_environment(
            role,
            head_ip=head_ip,
            observability_host=self._state.observability_host if self._state else None,
            observability_ports=session.handle.observability if with_observability else None,
        )

    def _start_observability(self, deadline: float) -> str | None:
        spec = self.spec
        launch = NodeLaunch(
            role=NodeRole.OBSERVABILITY,
            pool_name=spec.cluster_name + naming.OBSERVABILITY_SUFFIX,
            script=load_script(spec.observability_node_start_script, "observability"),
            env=self._node_env(NodeRole.OBSERVABILITY),
            resources=NodeResources(num_gpus=0),  # Prometheus and Grafana: no GPU of the machine
            yellowdog=spec.observability_yellowdog(),
        )
        pool_id, node_ids = self._ensure_backend().create_pool(self._cluster_id(), launch, 1)
        self.state.pools.append(
            PoolState(pool_id=pool_id, role="observability", node_count=1, node_ids=node_ids)
        )
        self._publish_state()
        node = self._require_session().wait_until_running(
            node_ids[0], "observability", deadline, self._not_up_in_time("observability")
        )
        return node.private_ip

    def _start_head(
        self, deadline: float, observability_ip: str | None, wait: bool = True
    ) -> NodeInfo | None:
        self.state.observability_host = observability_ip
        spec = self.spec
        launch = NodeLaunch(
            role=NodeRole.HEAD,
            pool_name=spec.cluster_name + naming.HEAD_SUFFIX,
            script=load_script(spec.head_node_ray_start_script, "head"),
            env=self._node_env(NodeRole.HEAD),
            resources=spec.head_node_resources,
            yellowdog=spec.head_yellowdog(),
        )
        pool_id, node_ids = self._ensure_backend().create_pool(self._cluster_id(), launch, 1)
        self.state.pools.insert(0, PoolState(pool_id=pool_id, role="head", node_count=1, node_ids=node_ids))
        self.state.head.node_id = node_ids[0]
        self._publish_state()
        if not wait:
            return None
        try:
            head = self._require_session().wait_for_head(node_ids[0], deadline, self._not_up_in_time("head"))
        except NodeFailedError as failed:
            head = self._replace_failed_head(failed, pool_id, launch, deadline)
        self.state.head.private_ip = head.private_ip
        self.state.head.public_ip = head.public_ip
        return head

    def _replace_failed_head(
        self, failed: NodeFailedError, pool_id: str, launch: NodeLaunch, deadline: float
    ) -> NodeInfo:
        """A head whose start failed gets one replacement, like a worker (`_replace_failed_worker`):
        nothing depends on it yet. A replacement that fails too fails the build with its log tail."""
        new_id = self._start_replacement("head", failed.node_id, failed.detail, pool_id, launch)
        if new_id is None:
            raise failed
        self.state.head.node_id = new_id
        self.state.pools[0].node_ids = [new_id]
        self._publish_state()
        try:
            return self._require_session().wait_for_head(new_id, deadline, self._not_up_in_time("head"))
        except NodeFailedError as again:
            raise _failed_again(again, new_id, failed.node_id) from None

    def _start_replacement(
        self, role: str, failed_id: str, detail: str, pool_id: str, launch: NodeLaunch
    ) -> str | None:
        """A node in place of `failed_id`, in the same pool; None where the backend takes none (on
        YellowDog a failed head fails its work requirement, which takes no new task)."""
        log.warning(
            "the %s %s of cluster %s failed to start, starting one replacement: %s",
            role,
            failed_id,
            self.spec.cluster_name,
            detail,
        )
        backend = self._ensure_backend()
        try:
            backend.terminate_nodes(self._cluster_id(), [failed_id])  # what it holds (a GPU, say) is free
            (new_id,) = backend.add_nodes(self._cluster_id(), pool_id, launch, 1)
        except RayDogError as cannot:
            log.warning("node %s cannot be replaced: %s", failed_id, cannot)
            return None
        return new_id

    def _launch_pool(self, pool: _Pool) -> None:
        self._require_session().require_token()
        launch = self._worker_launch(pool)
        backend_id, node_ids = self._require_session().launch_pool(launch, pool.spec.worker_pool_node_count)
        pool.backend_id = backend_id
        pool.node_ids = node_ids

    def _worker_launch(self, pool: _Pool) -> NodeLaunch:
        spec = pool.spec
        return NodeLaunch(
            role=NodeRole.WORKER,
            pool_name=pool.raydog_id,
            script=load_script(spec.worker_node_task_script, "worker"),
            env=self._node_env(NodeRole.WORKER, head_ip=self.state.head.private_ip),
            resources=spec.worker_node_resources,
            yellowdog=spec.yellowdog,
            replace_lost=True,
        )

    def _replace_failed_worker(self, failed: NodeInfo) -> None:
        """A worker whose start failed gets one replacement, as Ray's autoscaler would start another:
        on a loaded machine Ray's own start-up can time out (Ray 2.60 allows its raylet 30 s, fixed),
        and on YellowDog an instance can be lost. A replacement that fails too (a broken script, say)
        fails the wait with its log tail; so does a failed head."""
        pool = next((p for p in self._pools.values() if failed.node_id in p.node_ids), None)
        if failed.role != NodeRole.WORKER or pool is None or pool.backend_id is None:
            raise node_failure(failed)
        if failed.node_id in self._replacements:
            raise _failed_again(node_failure(failed), failed.node_id, self._replacements[failed.node_id])
        launch = self._worker_launch(pool)
        new_id = self._start_replacement("worker", failed.node_id, failed.detail, pool.backend_id, launch)
        if new_id is None:
            raise node_failure(failed)
        self._replacements[new_id] = failed.node_id
        pool.node_ids = [new_id if n == failed.node_id else n for n in pool.node_ids]
        self._publish_state()

    def _not_up_in_time(self, role: str) -> str:
        return (
            f"the {role} node of cluster {self.spec.cluster_name} was not up in time "
            f"(build timeout {self.spec.build_timeout}); everything created was shut down"
        )

    def _current_node_ids(self) -> set[str]:
        state = self.state
        current = {n for p in self._pools.values() for n in p.node_ids}
        current |= {n for p in state.pools if p.role == "observability" for n in p.node_ids}
        if state.head.node_id is not None:
            current.add(state.head.node_id)
        return current

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
        self._state.pools = [p for p in self._state.pools if p.role != "worker"] + [
            PoolState(
                pool_id=p.backend_id,
                raydog_id=p.raydog_id,
                role="worker",
                internal_name=p.internal_name,
                node_count=p.spec.worker_pool_node_count,
                node_ids=list(p.node_ids),
            )
            for p in self._pools.values()
            if p.backend_id is not None
        ]
        self._state.next_pool_index = self._next_pool_index
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

    def _find_pool(self, worker_pool_id: str) -> _Pool:
        for pool in self._pools.values():
            planned = self._planned_name + naming.worker_pool_suffix(pool.index)  # before a warm rename
            if worker_pool_id in (pool.raydog_id, pool.backend_id, planned):
                return pool
        raise RayDogError(f"no worker pool with id {worker_pool_id!r}; pools: {sorted(self._pools)}")

    def _backend_pool_ids(self) -> list[str]:
        return [p.pool_id for p in self._state.pools] if self._state else []

    def _cluster_id(self) -> str:
        return self._require_session().cluster_id

    def _require_session(self) -> ClusterSession:
        if self._session is None:
            raise RayDogError("the cluster has not been built: call build() first")
        return self._session

    def _check_open(self) -> None:
        if self._shut_down:
            raise RayDogError(f"cluster {self.spec.cluster_name} has been shut down")
        if self._left:
            raise RayDogError(f"this client has left warm cluster {self.spec.cluster_name}")


def _failed_again(error: NodeFailedError, node_id: str, replaced: str) -> NodeFailedError:
    """A replacement that failed too: the error (of the same kind: two lost machines are still the
    platform's doing) names both nodes."""
    return type(error)(error.role, node_id, f"{error.detail} (it replaced {replaced}, which failed too)")


def _pool_index(raydog_id: str | None, cluster_name: str) -> int | None:
    prefix = cluster_name + "-w"
    if raydog_id and raydog_id.startswith(prefix) and raydog_id[len(prefix) :].isdigit():
        return int(raydog_id[len(prefix) :])
    return None


def _seconds(value: timedelta | float | None, default: timedelta) -> float:
    if value is None:
        return default.total_seconds()
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds <= 0:
        raise SpecError(
            "head_node_build_timeout", f"must be positive, got {value}", "e.g. timedelta(minutes=5)"
        )
    return seconds
