"""How the flow's process reaches a RayDog cluster's Ray: directly, by Ray Client, or through SSH.

Locally the driver joins the cluster directly (GCS address on loopback). A YellowDog head is usually
reachable only by SSH, so Ray Client (`ray://`) goes through a tunnel opened with
`raydog_core.tunnels.RayTunnels`; the tunnel lives as long as the connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from raydog_core.cluster import RayDogCluster
from raydog_core.errors import SpecError

if TYPE_CHECKING:
    from raydog_core.tunnels import RayTunnels
    from raydog_prefect.blocks import RayDogClusterConfig

ConnectionMode = Literal["auto", "direct", "ray-client", "ssh-tunnel"]


@dataclass
class RayConnection:
    address: str
    dashboard_url: str | None
    tunnels: RayTunnels | None = None

    def close(self) -> None:
        if self.tunnels is not None:
            self.tunnels.stop_tunnels()
            self.tunnels = None


def resolve_mode(config: RayDogClusterConfig) -> ConnectionMode:
    """'auto': direct for the local backend; for YellowDog an SSH tunnel when an SSH user is set."""
    if config.ray_connection != "auto":
        return config.ray_connection
    if config.backend == "local":
        return "direct"
    return "ssh-tunnel" if config.ssh_user else "ray-client"


def check_connection(config: RayDogClusterConfig) -> None:
    """Reject SSH settings that cannot work before a cluster is built only to be shut down again."""
    if resolve_mode(config) != "ssh-tunnel":
        return
    if not config.ssh_user:
        raise SpecError(
            "ssh_user", "required for ray_connection 'ssh-tunnel'", "give the head node's SSH user"
        )
    if not config.ssh_private_key_file:
        raise SpecError(
            "ssh_private_key_file",
            "required for ray_connection 'ssh-tunnel'",
            "give the private key that logs in to the head",
        )
    for name in ("ssh_private_key_file", "ssh_known_hosts_file"):
        path = getattr(config, name)
        if path and not Path(path).expanduser().is_file():
            raise SpecError(name, f"{path!r} does not exist", "give a file on the machine running the flow")


def open_connection(cluster: RayDogCluster, config: RayDogClusterConfig) -> RayConnection:
    """The address to pass to `ray.init` for this built cluster (opening tunnels if needed)."""
    mode = resolve_mode(config)
    if mode == "direct":
        return RayConnection(cluster.ray_address or "", cluster.dashboard_url)
    if mode == "ray-client":
        return RayConnection(cluster.client_address or "", cluster.dashboard_url)
    return _through_ssh(cluster, config)


def _through_ssh(cluster: RayDogCluster, config: RayDogClusterConfig) -> RayConnection:
    from raydog_core.tunnels import LOOPBACK, RayTunnels, SSHTunnelSpec

    check_connection(config)
    head = cluster.state.head
    tunnels = RayTunnels(
        head.public_ip or head.private_ip or "",
        config.ssh_user or "",
        private_key_file=config.ssh_private_key_file,
        ray_tunnel_specs=[SSHTunnelSpec(0, head.client_port), SSHTunnelSpec(0, head.dashboard_port)],
        ssh_port=config.ssh_port,
        known_hosts_file=config.ssh_known_hosts_file,
        host_key_fingerprint=config.ssh_host_key_fingerprint,
    )
    tunnels.start_tunnels()
    return RayConnection(
        address=f"ray://{LOOPBACK}:{tunnels.local_port(head.client_port)}",
        dashboard_url=f"http://{LOOPBACK}:{tunnels.local_port(head.dashboard_port)}",
        tunnels=tunnels,
    )
