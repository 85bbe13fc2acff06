"""What a `raydog` connection says, as plain Python: no Airflow import, so triggers, callbacks and tests
share one reading of it.

| connection field | meaning |
| --- | --- |
| extra `backend` | `local` (default without a key) or `yellowdog` (default with a key) |
| host | YellowDog platform API URL (default https://api.yellowdog.ai) |
| login / password | YellowDog application key id / secret |
| extra `namespace` | YellowDog namespace for clusters whose spec does not name one |
| extra `ssh_user`, `ssh_private_key` or `ssh_private_key_file`, `ssh_port` | SSH to the head, to reach its dashboard through a tunnel |
| extra `ssh_host_key_fingerprint` or `ssh_known_hosts_file` | how to check the head's SSH host key (default: `~/.ssh/known_hosts`; `ssh_skip_host_key_check: true` turns the check off, warned) |

The `ssh_*` fields map onto the core's `SshAccess` (which holds the rules); the key text is loaded in
memory when a tunnel opens, never written to a file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from raydog_core import auth
from raydog_core.backends import Backend, create_backend
from raydog_core.credentials import YellowDogCredentials
from raydog_core.demand_watch import DemandWatch
from raydog_core.errors import SpecError, StateError
from raydog_core.leases import LeaseClient, LeaseError, LeaseKeeper
from raydog_core.lifecycle import vouched_head
from raydog_core.node_watch import NodeWatch
from raydog_core.spend_watch import SpendWatch
from raydog_core.ssh_access import SshAccess
from raydog_core.state import ClusterState
from raydog_core.ticker import Watch, WatchLogger

log = logging.getLogger(__name__)

BACKENDS = ("local", "yellowdog")
SSH_FIELDS = (  # the connection form's SSH fields (get_provider_info), as SshAccess reads them
    "ssh_user",
    "ssh_private_key",
    "ssh_private_key_file",
    "ssh_port",
    "ssh_host_key_fingerprint",
    "ssh_known_hosts_file",
    "ssh_skip_host_key_check",
)


@dataclass(frozen=True)
class RayDogConnectionSettings:
    """One `raydog` connection, read. Secrets stay in SecretStr: the repr shows none."""

    backend: str = "local"
    credentials: YellowDogCredentials | None = None
    namespace: str | None = None
    ssh: SshAccess | None = None  # set when the connection names an SSH user

    @classmethod
    def from_fields(
        cls,
        *,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | None = None,
        conn_id: str = "raydog",
    ) -> RayDogConnectionSettings:
        """Read the fields of an Airflow Connection (custom fields with or without the old UI prefix)."""
        extra = dict(extra or {})

        def field(name: str) -> Any:
            value = extra.get(name, extra.get(f"extra__raydog__{name}"))
            return None if value in ("", None) else value

        backend = field("backend") or ("yellowdog" if login else "local")
        if backend not in BACKENDS:
            raise SpecError(
                f"connection {conn_id}: backend",
                f"{backend!r} is not a backend",
                "use 'local' or 'yellowdog'",
            )
        credentials = None
        if backend == "yellowdog":
            if not login or not password:
                raise SpecError(
                    f"connection {conn_id}: login/password",
                    "missing",
                    "set the YellowDog application key id as login and its secret as password",
                )
            credentials = YellowDogCredentials.resolve(login, password, host or None)
        ssh = None
        if field("ssh_user"):
            try:
                ssh = SshAccess.from_fields({name: field(name) for name in SSH_FIELDS})
            except SpecError as error:
                raise SpecError(f"connection {conn_id}: {error.field}", error.problem, error.fix) from None
        return cls(backend=backend, credentials=credentials, namespace=field("namespace"), ssh=ssh)

    def create_backend(self) -> Backend:
        return create_backend(self.backend, self.credentials)

    def spec_defaults(self) -> dict[str, Any]:
        """ClusterSpec fields the connection decides unless the spec itself does."""
        defaults: dict[str, Any] = {"backend": self.backend}
        if self.namespace:
            defaults["cluster_namespace"] = self.namespace
        return defaults

    def check_state(self, state: ClusterState) -> None:
        if state.backend != self.backend:
            raise SpecError(
                "raydog_conn_id",
                f"the cluster runs on backend {state.backend!r} but the connection is for {self.backend!r}",
                "use the connection the cluster was built with",
            )
        if self.credentials is not None:
            state.check_platform(self.credentials.api_url)

    def dashboard_url(self, state: ClusterState) -> AbstractContextManager[str]:
        """The head's dashboard (Ray Jobs API) as this machine reaches it: directly, or by SSH tunnel."""
        return self.head_url(state, state.head.dashboard_port)

    @contextmanager
    def head_url(self, state: ClusterState, port: int) -> Iterator[str]:
        """`http://` to this port of the head as this machine reaches it: directly, or by SSH tunnel.

        The head's address comes from the backend, never from the state alone (the cluster's token is
        sent there). The tunnel is used when the connection names an SSH user and the backend's nodes
        are not directly reachable (YellowDog); it goes to the head's public address.
        """
        self.check_state(state)
        backend = self.create_backend()
        try:
            head = vouched_head(state, backend)
        finally:
            backend.close()
        access = self._tunnel_access()
        if access is None:
            yield f"http://{head.public_ip or head.private_ip}:{port}"
            return
        from raydog_core.tunnels import tunnel_to_head

        access.check_files(prefix="ssh_")
        with tunnel_to_head(head, access, [port]) as tunnels:
            yield f"http://127.0.0.1:{tunnels.local_port(port)}"

    def through_tunnel(self) -> bool:
        """Whether this connection reaches heads through an SSH tunnel (YellowDog with an SSH user)."""
        return self._tunnel_access() is not None

    def _tunnel_access(self) -> SshAccess | None:
        return self.ssh if self.backend != "local" else None

    def reaches_head(self) -> bool:
        """Whether this machine reaches a head's loopback-bound ports: on its host, or by SSH tunnel."""
        if self.through_tunnel():
            return True
        backend = self.create_backend()
        try:
            return backend.capabilities.nodes_reachable
        finally:
            backend.close()

    @contextmanager
    def hold_lease(self, state: ClusterState, holder: str) -> Iterator[None]:
        """Renew the DAG run's lease on the cluster while the block runs, and leave it fresh: it holds for
        one more `lease_timeout` after the task, for the next task of the run to take over. A cluster
        built without leases, or one this machine cannot reach, is left as it is."""
        if state.lease is None or state.head.lease_port is None or not self.reaches_head():
            yield
            return
        with self.head_url(state, state.head.lease_port) as url:
            client = LeaseClient(url, ray_token(state))
            keeper = LeaseKeeper(lambda: client, holder, state.lease).take()
            try:
                yield
            finally:
                keeper.stop(release=False)

    @contextmanager
    def watches(
        self,
        state: ClusterState,
        logger: WatchLogger,
        dashboard_url: str | None = None,
        backend: Backend | None = None,
    ) -> Iterator[None]:
        """While a task works on the cluster, what a builder watches while it holds one, into the task's
        own log: the spend cap (a warning at 80 %, an error at 100 %, looked at once now), Ray work no
        node can run (given `dashboard_url`, this machine's way to the head's dashboard, where the token
        goes), and on a backend that heals when listed (YellowDog) its nodes every 15 s, so a worker
        whose machine was lost gets a node back during the task. No process holds the cluster between
        tasks, so each task that uses it looks; a look that fails never fails the task. `backend`: the
        task's own (else one is opened for the watches, and closed after)."""
        own_backend = backend is None
        backend = backend or self.create_backend()
        started: list[Watch] = []
        try:
            spend = SpendWatch(lambda: backend.spend(state.cluster_id), state.cluster_name, logger)
            try:
                capped = spend.check() is not None
            except Exception:  # the cap is the platform's to enforce; this only reports it
                logger.debug("could not read the spend cap of %s", state.cluster_name, exc_info=True)
                capped = False
            if capped:
                started.append(spend.start())
            if dashboard_url is not None:
                demand = DemandWatch.on_dashboard(
                    dashboard_url,
                    ray_token(state),
                    lambda: backend.list_nodes(state.cluster_id),
                    state.cluster_name,
                    logger,
                )
                started.append(demand.start())
            if backend.capabilities.heals_when_listing:
                nodes = NodeWatch(lambda: backend.list_nodes(state.cluster_id), state.cluster_name)
                started.append(nodes.start())
            yield
        finally:
            for watch in started:
                watch.stop()
            if own_backend:
                backend.close()

    def release_lease(self, state: ClusterState, holder: str) -> None:
        """Give the DAG run's lease on a warm cluster up now: the cluster stays for other runs, and
        ends itself once idle. Where that fails, the lease lapses by itself after `lease_timeout`."""
        if state.head.lease_port is None or not self.reaches_head():
            return
        try:
            with self.head_url(state, state.head.lease_port) as url:
                LeaseClient(url, ray_token(state)).release(holder)
        except (LeaseError, StateError) as error:
            log.warning(
                "lease %s on cluster %s not released (it lapses by itself): %s",
                holder,
                state.cluster_name,
                error,
            )


def ray_token(state: ClusterState) -> str | None:
    """The cluster's Ray token: the 0600 file the build left under $RAYDOG_HOME on this machine, else
    $RAYDOG_RAY_AUTH_TOKEN (`auth.token_for`), so tasks of a cluster may run on any worker that has it."""
    if state.auth_mode != "token":
        return None
    token = auth.token_for(state.cluster_id)
    if token is None:
        raise StateError(
            f"the Ray token of cluster {state.cluster_name} is not on this machine: set "
            f"{auth.TOKEN_ENV_VAR} on every worker to the token the cluster was built with, run every "
            "task of the cluster where it was built, or share $RAYDOG_HOME between the workers (see "
            "docs/airflow.md)"
        )
    return token
