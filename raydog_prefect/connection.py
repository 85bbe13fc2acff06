"""How the flow's process reaches a RayDog cluster's Ray: directly, by Ray Client, or through SSH.

Locally the driver joins the cluster directly (GCS address on loopback). A YellowDog head is usually
reachable only by SSH, so Ray Client (`ray://`) goes through a tunnel opened with
`raydog_core.tunnels.tunnel_to_head`; the tunnel lives as long as the connection. The Block's `ssh_*`
fields map onto `raydog_core.ssh_access.SshAccess`, which holds the rules.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from raydog_core.cluster import RayDogCluster
from raydog_core.errors import SpecError
from raydog_core.ssh_access import SshAccess

if TYPE_CHECKING:
    from raydog_core.tunnels import RayTunnels
    from raydog_prefect.blocks import RayDogClusterConfig

ConnectionMode = Literal["auto", "direct", "ray-client", "ssh-tunnel"]
log = logging.getLogger("raydog")


@dataclass
class RayConnection:
    address: str
    dashboard_url: str | None
    tunnels: RayTunnels | None = None
    lease_url: str | None = None  # the head's lease endpoint through the tunnel, on a leased cluster

    def close(self) -> None:
        if self.tunnels is not None:
            self.tunnels.stop_tunnels()
            self.tunnels = None


def resolve_mode(config: RayDogClusterConfig) -> ConnectionMode:
    """'auto': direct for the local backend; for YellowDog always an SSH tunnel, because the other ways
    send the Ray token over the network without TLS (they stay available as explicit, warned choices)."""
    if config.ray_connection != "auto":
        return config.ray_connection
    return "direct" if config.backend == "local" else "ssh-tunnel"


SSH_FIELDS = tuple(f"ssh_{name}" for name in SshAccess.model_fields)  # those the Block has are read


def ssh_access(config: RayDogClusterConfig) -> SshAccess:
    """The Block's `ssh_*` fields as the core's SSH model; a SpecError names the Block's field."""
    fields = {name: getattr(config, name, None) for name in SSH_FIELDS}
    try:
        return SshAccess.from_fields(fields)
    except SpecError as error:
        problem = f"{error.problem} (ray_connection 'ssh-tunnel' needs it)"
        raise SpecError(error.field, problem, error.fix) from None


def check_connection(config: RayDogClusterConfig) -> None:
    """Reject SSH settings that cannot work before a cluster is built only to be shut down again."""
    if resolve_mode(config) == "ssh-tunnel":
        ssh_access(config).check_files(prefix="ssh_")


def open_connection(cluster: RayDogCluster, config: RayDogClusterConfig) -> RayConnection:
    """The address to pass to `ray.init` for this built cluster (opening tunnels if needed)."""
    mode = resolve_mode(config)
    if mode != "ssh-tunnel" and config.backend != "local":
        log.warning(
            "ray_connection=%r: the Ray token of cluster %s travels to its head without TLS; the default "
            "for YellowDog, 'ssh-tunnel', encrypts it",
            mode,
            cluster.spec.cluster_name,
        )
    if mode == "direct":
        return RayConnection(cluster.ray_address or "", cluster.dashboard_url)
    if mode == "ray-client":
        return RayConnection(cluster.client_address or "", cluster.dashboard_url)
    return _through_ssh(cluster, config)


def _through_ssh(cluster: RayDogCluster, config: RayDogClusterConfig) -> RayConnection:
    from raydog_core.tunnels import LOOPBACK, tunnel_to_head

    check_connection(config)
    head = cluster.state.head
    ports = [head.client_port, head.dashboard_port]
    leased = cluster.state.lease is not None and head.lease_port is not None
    if leased:
        ports.append(head.lease_port)  # type: ignore[arg-type]  # not None when leased
    tunnels = tunnel_to_head(cluster.head_node(), ssh_access(config), ports)
    tunnels.start_tunnels()
    return RayConnection(
        address=f"ray://{LOOPBACK}:{tunnels.local_port(head.client_port)}",
        dashboard_url=f"http://{LOOPBACK}:{tunnels.local_port(head.dashboard_port)}",
        tunnels=tunnels,
        lease_url=f"http://{LOOPBACK}:{tunnels.local_port(head.lease_port)}" if leased else None,  # type: ignore[arg-type]
    )
