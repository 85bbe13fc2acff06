"""SSH tunnels from the client to a cluster's head: Ray client, dashboard, observability, tag store.

`RayTunnels` keeps upstream RayDog's names (`RayTunnels`, `SSHTunnelSpec`, `basic_port_forward`,
`start_tunnels`, `stop_tunnels`) and fixes its defects: local ends bind to 127.0.0.1 only, the SSH
port is configurable, the host key can be verified (known_hosts file or pinned fingerprint), one SSH
connection carries every tunnel, errors are raised (and name what failed), and it is a context manager.
How to log in is one `SshAccess` (raydog_core.ssh_access); the keyword arguments map onto it.
`tunnel_to_head` is what the integrations use: tunnels to ports of a built cluster's head.

```python
with RayTunnels(head_public_ip, "yd-agent", private_key_file="~/.ssh/raydog",
                known_hosts_file="~/.ssh/known_hosts") as tunnels:
    ray.init(f"ray://127.0.0.1:{tunnels.local_port(10001)}")

with tunnel_to_head(state, access, [state.head.dashboard_port]) as tunnels:
    dashboard = f"http://127.0.0.1:{tunnels.local_port(state.head.dashboard_port)}"
```
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import paramiko
import sshtunnel

from raydog_core.backends.base import NodeInfo, ObservabilityPorts
from raydog_core.errors import RayDogError, SpecError, StateError
from raydog_core.spec import build_model
from raydog_core.ssh_access import SshAccess

if TYPE_CHECKING:
    from raydog_core.state import ClusterState

log = logging.getLogger("raydog")

LOOPBACK = "127.0.0.1"
RAY_CLIENT_PORT = 10001
RAY_DASHBOARD_PORT = 8265
GRAFANA_PORT = ObservabilityPorts.grafana  # on YellowDog; a local cluster's ports are in its state
PROMETHEUS_PORT = ObservabilityPorts.prometheus
CONNECT_TIMEOUT_S = 10.0


class TunnelError(RayDogError):
    """An SSH tunnel could not be opened; says to which host and why (never with a secret)."""


@dataclass(frozen=True)
class SSHTunnelSpec:
    """One forwarded port: `local_bind_port` on the client to `remote_host:remote_port` seen from the head.

    `local_bind_port=0` picks a free port (read it back with `RayTunnels.local_port`). The local end
    always binds to 127.0.0.1, so nobody else on the client's network can use the tunnel.
    """

    local_bind_port: int
    remote_bind_port: int
    remote_bind_host: str = LOOPBACK  # "127.0.0.1" is the head itself; a private IP reaches through it

    def __post_init__(self) -> None:
        for name in ("local_bind_port", "remote_bind_port"):
            port = getattr(self, name)
            if (
                not isinstance(port, int)
                or not 0 <= port <= 65535
                or (name == "remote_bind_port" and port == 0)
            ):
                raise SpecError(f"SSHTunnelSpec.{name}", f"{port!r} is not a valid port", "use 1-65535")


class RayTunnels:
    """SSH tunnels through the head node; see the module docstring."""

    def __init__(
        self,
        ray_head_ip_address: str,
        ssh_user: str = "",
        password: str | None = None,
        private_key_file: str | Path | None = None,
        private_key_password: str | None = None,
        ray_tunnel_specs: Sequence[SSHTunnelSpec] | None = None,
        *,
        ssh_port: int = 22,
        known_hosts_file: str | Path | None = None,
        host_key_fingerprint: str | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        access: SshAccess | None = None,
    ) -> None:
        """Give `access`, or the upstream-style SSH arguments (mapped onto an SshAccess), not both."""
        if not ray_head_ip_address:
            raise SpecError("ray_head_ip_address", "is empty", "give the head node's public IP address")
        if access is None:
            if not ssh_user:
                raise SpecError("ssh_user", "is empty", "give the user to log in as on the head node")
            given = {
                "user": ssh_user,
                "password": password,
                "private_key_file": str(private_key_file) if private_key_file is not None else None,
                "private_key_password": private_key_password,
                "port": ssh_port,
                "known_hosts_file": str(known_hosts_file) if known_hosts_file is not None else None,
                "host_key_fingerprint": host_key_fingerprint,
            }
            access = build_model(SshAccess, {k: v for k, v in given.items() if v is not None})
        elif ssh_user or password or private_key_file or known_hosts_file or host_key_fingerprint:
            raise SpecError("access", "given with other SSH arguments", "put them all in the SshAccess")
        access.check_files()
        self.host = ray_head_ip_address
        self.access = access
        self._timeout = connect_timeout_s
        self.specs: list[SSHTunnelSpec] = list(
            ray_tunnel_specs
            if ray_tunnel_specs is not None
            else [self.basic_port_forward(RAY_CLIENT_PORT), self.basic_port_forward(RAY_DASHBOARD_PORT)]
        )
        if not self.specs:
            raise SpecError(
                "ray_tunnel_specs", "is empty", "give at least one SSHTunnelSpec or leave it None"
            )
        self._forwarder: sshtunnel.SSHTunnelForwarder | None = None

    def __repr__(self) -> str:
        return f"RayTunnels({self.ssh_user}@{self.host}:{self.ssh_port}, {len(self.specs)} tunnels)"

    @property
    def ssh_user(self) -> str:
        return self.access.user

    @property
    def ssh_port(self) -> int:
        return self.access.port

    @staticmethod
    def basic_port_forward(port: int) -> SSHTunnelSpec:
        """The same port on both ends, to the head itself (upstream's helper)."""
        return SSHTunnelSpec(port, port)

    @staticmethod
    def through_head(private_ip: str, port: int, local_port: int = 0) -> SSHTunnelSpec:
        """A port of another node (e.g. the observability node's Grafana), reached through the head."""
        return SSHTunnelSpec(local_port, port, private_ip)

    @staticmethod
    def observability_forwards(
        state: ClusterState, local_prometheus_port: int = 0, local_grafana_port: int = 0
    ) -> list[SSHTunnelSpec]:
        """Prometheus and Grafana of the cluster's observability node, through the head (ports from state).

        Read the local ends back with `local_port(state.observability.prometheus_port,
        state.observability_host)`; 0 picks free ones.
        """
        if state.observability is None or not state.observability_host:
            raise SpecError(
                "state",
                f"cluster {state.cluster_name} has no observability node",
                "build it with enable_observability=True",
            )
        host = state.observability_host
        return [
            RayTunnels.through_head(host, state.observability.prometheus_port, local_prometheus_port),
            RayTunnels.through_head(host, state.observability.grafana_port, local_grafana_port),
        ]

    # -- lifecycle ----------------------------------------------------------------------------------

    def start_tunnels(self) -> None:
        """Open one SSH connection carrying every tunnel; raises TunnelError if it cannot."""
        if self._forwarder is not None:
            return
        host_key = self._expected_host_key()
        password = self.access.password.get_secret_value() if self.access.password else None
        forwarder = sshtunnel.SSHTunnelForwarder(
            (self.host, self.ssh_port),
            ssh_username=self.ssh_user,
            ssh_password=password,
            ssh_pkey=self.access.load_private_key(),  # in memory: a key given as text never hits disk
            ssh_host_key=host_key,
            ssh_config_file=None,
            allow_agent=False,
            host_pkey_directories=[],
            local_bind_addresses=[(LOOPBACK, s.local_bind_port) for s in self.specs],
            remote_bind_addresses=[(s.remote_bind_host, s.remote_bind_port) for s in self.specs],
            set_keepalive=30.0,
        )
        try:
            forwarder.start()
            if not forwarder.is_active:
                raise sshtunnel.BaseSSHTunnelForwarderError("authentication failed or the server refused")
        except (sshtunnel.BaseSSHTunnelForwarderError, paramiko.SSHException, OSError) as error:
            _discard(forwarder)
            raise TunnelError(
                f"could not open SSH tunnels to {self.ssh_user}@{self.host}:{self.ssh_port}: "
                f"{_describe(error)}"
            ) from None
        self._forwarder = forwarder
        log.info("SSH tunnels open through %s: %s", self.host, self.local_ports())

    def stop_tunnels(self, ignore_errors: bool = True) -> None:
        """Close the tunnels (idempotent). With ignore_errors=False a failure to close is raised."""
        forwarder, self._forwarder = self._forwarder, None
        if forwarder is None:
            return
        try:
            forwarder.stop(force=True)
        except Exception as error:  # noqa: BLE001 - reported or raised as the caller chose
            if not ignore_errors:
                raise TunnelError(
                    f"closing the SSH tunnels to {self.host} failed: {_describe(error)}"
                ) from None
            log.warning("closing the SSH tunnels to %s failed: %s", self.host, _describe(error))

    def __enter__(self) -> RayTunnels:
        self.start_tunnels()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_tunnels()

    # -- where to connect -----------------------------------------------------------------------------

    @property
    def is_active(self) -> bool:
        return self._forwarder is not None and self._forwarder.is_active

    def local_ports(self) -> dict[tuple[str, int], int]:
        """{(remote host, remote port): local port on 127.0.0.1} for every open tunnel."""
        if self._forwarder is None:
            raise TunnelError("the tunnels are not open: call start_tunnels() or use `with RayTunnels(...)`")
        ports = self._forwarder.local_bind_ports
        return {
            (s.remote_bind_host, s.remote_bind_port): port for s, port in zip(self.specs, ports, strict=True)
        }

    def local_port(self, remote_port: int, remote_host: str = LOOPBACK) -> int:
        """The local port (on 127.0.0.1) that reaches `remote_host:remote_port`."""
        ports = self.local_ports()
        try:
            return ports[(remote_host, remote_port)]
        except KeyError:
            raise TunnelError(
                f"no tunnel to {remote_host}:{remote_port}; open ones: {sorted(ports)}"
            ) from None

    # -- host key verification ------------------------------------------------------------------------

    def _expected_host_key(self) -> paramiko.PKey | None:
        """The head's host key to insist on: from known_hosts, or fetched and checked against the pin."""
        policy = self.access.host_key_policy
        if policy == "known_hosts":
            return self._key_from_known_hosts()
        if policy == "fingerprint":
            expected = self.access.host_key_fingerprint
            key = fetch_host_key(self.host, self.ssh_port, self._timeout)
            actual = host_key_fingerprint(key)
            if actual != expected:
                raise TunnelError(
                    f"host key of {self.host}:{self.ssh_port} has fingerprint {actual}, expected "
                    f"{expected}: refusing to connect (the head was replaced, or someone is in between)"
                )
            return key
        log.warning(
            "SSH host key of %s is NOT verified (skip_host_key_check): anyone in between can read the "
            "tunnel's traffic; pass known_hosts_file or host_key_fingerprint instead",
            self.host,
        )
        return None

    def _key_from_known_hosts(self) -> paramiko.PKey:
        known_hosts = self.access.known_hosts_path
        hosts = paramiko.HostKeys(str(known_hosts)) if known_hosts.is_file() else paramiko.HostKeys()
        names = [self.host] if self.ssh_port == 22 else [f"[{self.host}]:{self.ssh_port}"]
        for name in names:
            entry = hosts.lookup(name)
            if entry:
                return next(iter(entry.values()))
        raise TunnelError(
            f"{self.host}:{self.ssh_port} is not in {known_hosts}: add its host key "
            f"(ssh-keyscan -p {self.ssh_port} {self.host}) after checking it, or pin host_key_fingerprint "
            "(skip_host_key_check turns verification off, insecurely)"
        )


def tunnel_to_head(
    head: NodeInfo,
    access: SshAccess,
    ports: Sequence[int],
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> RayTunnels:
    """Tunnels (not yet open) to these ports of a cluster's head, through its public address.

    `head` is the head as its backend reports it (`raydog_core.lifecycle.vouched_head`), never an
    address saved state alone names: the cluster's token travels through these tunnels.
    Use it as a context manager (`with tunnel_to_head(...) as tunnels`), or call `start_tunnels()` and
    later `stop_tunnels()` when the tunnels outlive one block (the Prefect runner's Ray Client).
    Local ends are free ports on 127.0.0.1: read them back with `tunnels.local_port(port)`.
    """
    host = head.public_ip or head.private_ip
    if not host:
        raise StateError(f"head {head.node_id} has no address yet")
    return RayTunnels(
        host,
        ray_tunnel_specs=[SSHTunnelSpec(0, port) for port in ports],
        connect_timeout_s=connect_timeout_s,
        access=access,
    )


def fetch_host_key(host: str, port: int, timeout_s: float = CONNECT_TIMEOUT_S) -> paramiko.PKey:
    """The host key a server presents (only the key exchange; no authentication)."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError as error:
        raise TunnelError(f"cannot reach {host}:{port}: {_describe(error)}") from None
    transport = paramiko.Transport(sock)
    try:
        transport.start_client(timeout=timeout_s)
        return transport.get_remote_server_key()
    except paramiko.SSHException as error:
        raise TunnelError(f"SSH handshake with {host}:{port} failed: {_describe(error)}") from None
    finally:
        transport.close()


def host_key_fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a key, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _discard(forwarder: sshtunnel.SSHTunnelForwarder) -> None:
    """Release a forwarder whose start failed.

    With an SSH session (a tunnel check failed) its servers serve, and the public stop() releases all.
    Without one (the login failed), sshtunnel 0.5.1 (pinned) has already closed the transport but has
    bound the local ports and never served them, and stop() would wait for ever on them
    (socketserver's shutdown() of a server that never served). No public call reaches those sockets, so
    they are closed here through `_server_list`, the one private attribute used.
    """
    if not forwarder.is_active:
        unserved, forwarder._server_list = forwarder._server_list, []
        for server in unserved:
            server.server_close()
    forwarder.stop(force=True)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
