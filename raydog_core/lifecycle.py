"""One cluster's life on a backend: open it, start nodes with the right environment and token, know
when the head is ready, shut everything down.

The builder (`RayDogCluster`), the autoscaler provider (`ray up`) and the step-by-step operations
(Airflow's deferrable build) all go through this one layer, so a head counts as ready by the same rule
and a node gets the same environment whichever door built the cluster.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TypeVar

from raydog_core import auth, commands, leases, postmortem, warm_files
from raydog_core.backends.base import (
    Backend,
    ClusterHandle,
    ClusterOptions,
    HeadPorts,
    NodeInfo,
    NodeLaunch,
    NodeRole,
    NodeStatus,
    ObservabilityPorts,
    node_failure,
)
from raydog_core.errors import BuildTimeoutError, NoCapacityError, RayDogError, StateError
from raydog_core.home import autoscaler_files
from raydog_core.node_env import role_environment
from raydog_core.observability import password as observability_password
from raydog_core.ports import is_listening
from raydog_core.pricing import ClusterUsage
from raydog_core.ray_nodes import alive_ray_nodes
from raydog_core.state import ClusterState, HeadState, LeaseState, ObservabilityState, UsageState

T = TypeVar("T")
log = logging.getLogger("raydog")

POLL_INTERVAL_S = 0.5
HEAD_WITHOUT_DASHBOARD_S = 10.0  # a custom head script with no dashboard: trusted this long after its GCS
HEAD_SETTLE_MAX_S = 60.0  # a dashboard that never lists the head: trusted after this


class Abandoned(RayDogError):
    """Someone else gave up on this wait (an interrupted `ray up` is tearing the cluster down)."""


def poll_until(
    look: Callable[[], T | None],
    deadline: float,
    timeout_error: Callable[[], BaseException],
    *,
    abandoned: threading.Event | None = None,
    interval: float = POLL_INTERVAL_S,
) -> T:
    """`look()` until it returns something; its own exceptions (a node that failed) end the wait at once.

    `deadline` is a `time.monotonic()` value; `timeout_error` builds the exception raised after it.
    """
    while True:
        result = look()
        if result is not None:
            return result
        if abandoned is not None and abandoned.is_set():
            raise Abandoned("the wait was abandoned")
        if time.monotonic() >= deadline:
            raise timeout_error()
        time.sleep(interval)


@dataclass
class ClusterSession:
    """A cluster opened on a backend, with the Ray token its nodes share (never logged or saved).

    `lease` is set for a cluster that ends itself once no lease holds it: its head runs the watchdog.
    """

    backend: Backend
    handle: ClusterHandle
    cluster_name: str
    auth_mode: str
    token: str | None = field(default=None, repr=False)
    lease: LeaseState | None = None
    preload_modules: tuple[str, ...] = ()  # what every Ray worker imports as it starts

    @classmethod
    def open(
        cls,
        backend: Backend,
        options: ClusterOptions,
        auth_mode: str,
        lease: LeaseState | None = None,
        preload_modules: Collection[str] = (),
    ) -> ClusterSession:
        """Create the cluster's container and its token (kept in a 0600 file for this user's clients)."""
        handle = backend.open_cluster(options)
        token = auth.cluster_token() if auth_mode == "token" else None
        if token:
            auth.save_token(handle.cluster_id, token)
        return cls(backend, handle, options.name, auth_mode, token, lease, tuple(preload_modules))

    @classmethod
    def attach(
        cls,
        backend: Backend,
        handle: ClusterHandle,
        cluster_name: str,
        auth_mode: str,
        token: str | None,
        lease: LeaseState | None = None,
        preload_modules: Collection[str] = (),
    ) -> ClusterSession:
        """An existing cluster; `token` is None where this machine does not hold it."""
        token = token if auth_mode == "token" else None
        return cls(backend, handle, cluster_name, auth_mode, token, lease, tuple(preload_modules))

    @classmethod
    def from_state(cls, state: ClusterState, backend: Backend) -> ClusterSession:
        """The session of a built cluster, from its saved state, with the token if this machine has it
        (`auth.token_for`)."""
        observability = state.observability or ObservabilityState()
        ports = backend.head_ports(state.cluster_id) or _ports_of(state)  # the backend's, where it knows
        handle = ClusterHandle(
            state.cluster_id,
            ports,
            state.log_dir,
            ObservabilityPorts(observability.prometheus_port, observability.grafana_port),
        )
        token = auth.token_for(state.cluster_id) if state.auth_mode == "token" else None
        lease = state.lease if state.head.lease_port is not None else None
        return cls.attach(
            backend, handle, state.cluster_name, state.auth_mode, token, lease, state.worker_preload_modules
        )

    @property
    def cluster_id(self) -> str:
        return self.handle.cluster_id

    # -- nodes ------------------------------------------------------------------------------------------

    def node_environment(
        self,
        role: NodeRole,
        *,
        head_ip: str | None = None,
        observability_host: str | None = None,
        observability_ports: ObservabilityPorts | None = None,
    ) -> dict[str, str]:
        """What every node of this role gets, the token included: the same through every door. With an
        observability node, it and the head also get the cluster's observability password."""
        env = role_environment(
            self.cluster_name,
            role,
            self.handle.ports.gcs,
            self.auth_mode,
            head_ip=head_ip,
            observability_host=observability_host,
            observability_ports=observability_ports,
        )
        if self.token:
            env["RAY_AUTH_TOKEN"] = self.token
        if self.lease is not None and role == NodeRole.HEAD:
            env.update(
                leases.watchdog_environment(self.lease, self.handle.ports.lease, self.handle.ports.dashboard)
            )
        if self.lease is not None and role == NodeRole.WORKER:
            env.update(leases.worker_environment())
        if self.preload_modules and role != NodeRole.OBSERVABILITY:
            env["RAY_preload_python_modules"] = ",".join(self.preload_modules)
        if observability_ports is not None and role != NodeRole.WORKER:
            env.update(observability_password.node_environment(self.cluster_id, role))
        return env

    def lease_client(self, head: NodeInfo) -> leases.LeaseClient:
        """The lease endpoint of this cluster's head, at the address its backend reports (`head` must
        come from the backend, e.g. `vouched_head`): only a head this machine reaches directly."""
        if self.lease is None:
            raise RayDogError(
                f"cluster {self.cluster_name} was built without leases: it has no lease endpoint"
            )
        return leases.LeaseClient(f"http://{head.private_ip}:{self.handle.ports.lease}", self.token)

    def require_token(self) -> None:
        """New nodes of a token-protected cluster need its token; say where it is when it is missing."""
        if self.auth_mode == "token" and not self.token:
            raise RayDogError(
                f"cannot add nodes to cluster {self.cluster_name}: its Ray token is not on this machine "
                "(it is kept under $RAYDOG_HOME/tokens of the machine that built it)"
            )

    def launch_pool(self, launch: NodeLaunch, count: int) -> tuple[str, list[str]]:
        return self.backend.create_pool(self.cluster_id, launch, count)

    def nodes(self) -> list[NodeInfo]:
        return self.backend.list_nodes(self.cluster_id)

    def node(self, node_id: str) -> NodeInfo | None:
        return next((n for n in self.nodes() if n.node_id == node_id), None)

    def failed_nodes(self, node_ids: Collection[str]) -> list[NodeInfo]:
        """The nodes of `node_ids` whose script exited. One the platform cannot place at all (no
        capacity) fails the wait at once: waiting longer would not bring it."""
        nodes = [n for n in self.nodes() if n.node_id in node_ids]
        raise_if_blocked(nodes)
        return [n for n in nodes if n.status == NodeStatus.FAILED]

    def wait_until_running(self, node_id: str, role: str, deadline: float, timeout_message: str) -> NodeInfo:
        """Until the node's script runs and it has an address; fails fast if it exits."""

        def look() -> NodeInfo | None:
            node = self.node(node_id)
            if node is None:
                return None
            if node.status.is_final:
                raise node_failure(node, role)
            raise_if_blocked([node])
            return node if node.status == NodeStatus.RUNNING and node.private_ip else None

        return poll_until(look, deadline, lambda: BuildTimeoutError(timeout_message))

    def wait_for_head(
        self,
        node_id: str,
        deadline: float,
        timeout_message: str,
        *,
        abandoned: threading.Event | None = None,
    ) -> NodeInfo:
        """Until the head is ready for workers (see HeadProbe); fails fast if its script exits."""
        probe = HeadProbe(self, node_id)
        return poll_until(
            probe.look, deadline, lambda: BuildTimeoutError(timeout_message), abandoned=abandoned
        )

    def vouched_head(self, state: ClusterState) -> NodeInfo:
        """The head as the backend reports it: the only address the cluster's token (or anything else
        secret) is sent to. A state whose head the backend does not know, or that names other
        addresses for it, is refused: saved state alone never decides where a token goes."""
        head_id = state.head.node_id
        node = self.node(head_id) if head_id else None
        if node is None or node.role != NodeRole.HEAD or node.status != NodeStatus.RUNNING:
            raise StateError(
                f"cluster {self.cluster_name} ({self.cluster_id}) has no running head {head_id!r} on its "
                "backend: it was shut down, or the state does not belong to it"
            )
        named = {ip for ip in (state.head.private_ip, state.head.public_ip) if ip is not None}
        if not named <= {node.private_ip, node.public_ip}:
            raise StateError(
                f"saved state names head address(es) {sorted(named)} for cluster {self.cluster_name}, "
                f"but its backend reports {node.private_ip} / {node.public_ip}: refusing to use the state"
            )
        claimed, known = _ports_of(state), self.handle.ports
        if state.head.lease_port is None:
            known = HeadPorts(known.gcs, known.dashboard, known.client, claimed.lease)
        if claimed != known:
            raise StateError(
                f"saved state names head ports {claimed} for cluster {self.cluster_name}, but its backend "
                f"reports {known}: refusing to use the state"
            )
        return node

    def alive_in_ray(self, head_node_id: str | None) -> int:
        """Nodes alive in Ray, asked of the head's dashboard at the address the backend reports; where
        nodes are unreachable, running nodes as the backend reports them."""
        nodes = self.nodes()
        if not self.backend.capabilities.nodes_reachable:
            return sum(1 for n in nodes if n.status == NodeStatus.RUNNING)
        head = next((n for n in nodes if n.node_id == head_node_id and n.role == NodeRole.HEAD), None)
        if head is None or head.status != NodeStatus.RUNNING or not head.private_ip:
            return 0
        dashboard = f"http://{head.private_ip}:{self.handle.ports.dashboard}"
        return len(alive_ray_nodes(dashboard, self.token))

    # -- the end ----------------------------------------------------------------------------------------

    def shut_down(self, pool_ids: Collection[str] = (), reason: str = "shut down") -> list[str]:
        """Everything of the cluster (see `shut_down_cluster`); returns what failed."""
        return shut_down_cluster(self.backend, self.cluster_id, pool_ids, reason)

    def usage(self, state: ClusterState) -> ClusterUsage | None:
        """After shut_down: node-hours and cost from the backend's records, logged and written into
        `state.usage`. Measuring is a report, not part of the teardown: a failure is logged, not raised."""
        try:
            usage = self.backend.usage(self.cluster_id, [p.pool_id for p in state.pools])
        except Exception as error:  # noqa: BLE001 - the cluster is gone either way
            log.warning("could not measure what cluster %s used: %s", self.cluster_name, error)
            return None
        state.usage = UsageState(node_hours=usage.node_hours, cost=usage.cost, currency=usage.currency)
        log.info("cluster %s used %s", self.cluster_name, usage.describe())
        return usage


def head_state(ports: HeadPorts, leased: bool, node: NodeInfo | None = None) -> HeadState:
    """The head's part of a cluster's state: its ports (the lease port where its watchdog serves
    leases), and its node and addresses once known. `_ports_of` reads it back."""
    return HeadState(
        node_id=node.node_id if node else None,
        private_ip=node.private_ip if node else None,
        public_ip=node.public_ip if node else None,
        gcs_port=ports.gcs,
        dashboard_port=ports.dashboard,
        client_port=ports.client,
        lease_port=ports.lease if leased else None,
    )


def _ports_of(state: ClusterState) -> HeadPorts:
    head = state.head
    if head.lease_port is None:
        return HeadPorts(head.gcs_port, head.dashboard_port, head.client_port)
    return HeadPorts(head.gcs_port, head.dashboard_port, head.client_port, head.lease_port)


class HeadProbe:
    """Is the head ready for workers to join? One look at a time, remembering when its GCS first opened.

    Ready means: the head's script runs and, where this client can reach nodes, Ray's GCS accepts
    connections and the head's raylet is alive in Ray (its dashboard says so). Workers that join
    earlier compete with the head's own start for CPU and GCS time, and on small machines miss Ray's
    fixed 30 s registration deadline. A head without a dashboard (a custom script) is trusted a while
    after its GCS opens. Where nodes are unreachable, a running head is all anyone can see.
    """

    def __init__(self, session: ClusterSession, node_id: str) -> None:
        self._session = session
        self._node_id = node_id
        self._gcs_open_since: float | None = None

    def look(self) -> NodeInfo | None:
        node = self._session.node(self._node_id)
        if node is None:
            return None
        if node.status.is_final:
            raise node_failure(node, "head")
        if node.status != NodeStatus.RUNNING or not node.private_ip:
            return None
        if not self._session.backend.capabilities.nodes_reachable:
            return node
        ports = self._session.handle.ports
        if self._gcs_open_since is None and is_listening(node.private_ip, ports.gcs):
            self._gcs_open_since = time.monotonic()
        if self._gcs_open_since is None:
            return None
        return node if self._settled(node.private_ip, self._gcs_open_since) else None

    def _settled(self, head_ip: str, gcs_open_since: float) -> bool:
        dashboard = self._session.handle.ports.dashboard
        if alive_ray_nodes(f"http://{head_ip}:{dashboard}", self._session.token):
            return True
        waited = time.monotonic() - gcs_open_since
        if not is_listening(head_ip, dashboard):
            return waited >= HEAD_WITHOUT_DASHBOARD_S
        return waited >= HEAD_SETTLE_MAX_S


def vouched_head(state: ClusterState, backend: Backend) -> NodeInfo:
    """The running head of the cluster `state` names, with the addresses its backend reports (see
    `ClusterSession.vouched_head`): what a client connects to with the cluster's token."""
    return ClusterSession.from_state(state, backend).vouched_head(state)


def raise_if_blocked(nodes: Collection[NodeInfo]) -> None:
    blocked = [n for n in nodes if n.blocked_by]
    if blocked:
        names = ", ".join(n.node_id for n in blocked)
        raise NoCapacityError(
            f"{blocked[0].blocked_by} (waiting: {names}); try again later, or give the pool a template "
            "with other sources (instance types, regions, providers)"
        )


def shut_down_cluster(
    backend: Backend, cluster_id: str, pool_ids: Collection[str] = (), reason: str = "shut down"
) -> list[str]:
    """Commands run for it on this machine, its nodes and pools, then its secrets; then its post-mortem
    (`raydog_core.postmortem`, once per cluster; `reason` says why it ended). Keeps going past failures
    and returns them; idempotent. Every door ends a cluster through here."""
    commands.stop_all(cluster_id)
    failures = backend.shut_down(cluster_id, list(pool_ids))
    forget_secrets(cluster_id)
    postmortem.write(backend, cluster_id, reason)
    return failures


def forget_secrets(cluster_id: str) -> None:
    """The secrets this machine keeps for a cluster that is over (shut down, or ended by itself): its
    token, observability password, and a `ray up` cluster's client-side files (tag-store password);
    and a warm cluster's saved state, so no later run tries to attach to it."""
    auth.delete_token(cluster_id)
    warm_files.forget_cluster(cluster_id)
    observability_password.PASSWORDS.delete(cluster_id)
    shutil.rmtree(autoscaler_files(cluster_id), ignore_errors=True)
