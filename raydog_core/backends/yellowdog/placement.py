"""What a YellowDog node's placement changes, in one place: nothing else in the backend asks where it is.

The placement (`NodePlacement`) is chosen by whoever constructs the backend: an argument, the spec's
`node_placement`, the `ray up` provider's `node_placement`, or `RAYDOG_YELLOWDOG_NODE_PLACEMENT` for
integrations that build backends themselves. It is never derived from the platform's URL: a real
platform reached through a local proxy is still a platform whose nodes own their machines.

| | own_machine (default) | shared_host |
| --- | --- | --- |
| head / observability ports | Ray's and Prometheus' usual ones | free ports of this host |
| other Ray ports, temp dir | Ray's defaults | free ports, a short per-node temp dir |
| `--num-gpus` | only when the spec gives it (else Ray counts the machine's) | always (0 by default) |
| observability bind address | 0.0.0.0 (the head pushes over the private network; password-protected) | loopback |
| head's Prometheus agent port | Ray's default | a free one |
| client reaches nodes directly | no: SSH tunnel through the head | yes |
| node files at local paths | no | yes |
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from raydog_core import node_env
from raydog_core.backends.base import BackendCapabilities, HeadPorts, NodeLaunch, NodeRole, ObservabilityPorts
from raydog_core.errors import SpecError
from raydog_core.local_node_args import local_node_args
from raydog_core.ports import free_ports
from raydog_core.spec import NodePlacement

PLACEMENT_ENV = "RAYDOG_YELLOWDOG_NODE_PLACEMENT"


def resolve_placement(value: NodePlacement | str | None = None) -> NodePlacement:
    """The caller's choice, else $RAYDOG_YELLOWDOG_NODE_PLACEMENT, else own_machine."""
    where = "node_placement"
    if value is None:
        value, where = os.environ.get(PLACEMENT_ENV) or NodePlacement.OWN_MACHINE, PLACEMENT_ENV
    try:
        return NodePlacement(value)
    except ValueError:
        choices = ", ".join(p.value for p in NodePlacement)
        raise SpecError(where, f"unknown placement {value!r}", f"use one of {choices}") from None


def capabilities(placement: NodePlacement) -> BackendCapabilities:
    shared = placement == NodePlacement.SHARED_HOST
    return BackendCapabilities(nodes_reachable=shared, nodes_on_client_host=shared, heals_when_listing=True)


def head_ports(placement: NodePlacement) -> HeadPorts:
    return HeadPorts(*free_ports(4)) if placement == NodePlacement.SHARED_HOST else HeadPorts()


HEAD_PORTS_LABEL = "raydog-head-ports"


def head_ports_label(placement: NodePlacement, ports: HeadPorts) -> dict[str, str]:
    """On a shared host the head's ports are free ones, chosen by whoever opened the cluster: kept in a
    cluster label, so another process (a run attaching to a warm cluster) learns them from the platform."""
    if placement != NodePlacement.SHARED_HOST:
        return {}
    return {HEAD_PORTS_LABEL: f"{ports.gcs},{ports.dashboard},{ports.client},{ports.lease}"}


def head_ports_from_label(labels: Mapping[str, str]) -> HeadPorts | None:
    """The ports `head_ports_label` wrote, or None (no label, or not four ports)."""
    try:
        ports = [int(part) for part in labels.get(HEAD_PORTS_LABEL, "").split(",")]
    except ValueError:
        return None
    if len(ports) != 4 or not all(0 < port < 65536 for port in ports):
        return None
    return HeadPorts(*ports)


def observability_ports(placement: NodePlacement) -> ObservabilityPorts:
    return (
        ObservabilityPorts(*free_ports(2)) if placement == NodePlacement.SHARED_HOST else ObservabilityPorts()
    )


def node_args(placement: NodePlacement, cluster_id: str, node_id: str, launch: NodeLaunch) -> list[str]:
    """`ray start` arguments of a node before the head's own: resources, and on a shared host its
    temp dir and free ports (a node without `--num-gpus` would claim every GPU of the shared host)."""
    resources = launch.resources
    args = node_env.resource_args(resources, resources.num_gpus or 0)
    if placement == NodePlacement.SHARED_HOST:
        temp_dir = node_files_root(cluster_id) / node_id
        temp_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return local_node_args(temp_dir) + args
    if resources.num_gpus is None:  # one machine per node: let Ray count the machine's GPUs
        args = [a for a in args if not a.startswith("--num-gpus=")]
    return args


def observability_env(placement: NodePlacement, launch: NodeLaunch, env: dict[str, str]) -> dict[str, str]:
    """Variables the node scripts need beyond the builder's, by role (see `node_env`)."""
    if launch.role == NodeRole.OBSERVABILITY and placement == NodePlacement.OWN_MACHINE:
        # The head pushes metrics to this node and clients reach Grafana through the head: listen on the
        # private network (the script's default is loopback, right for nodes sharing one host).
        return {"RAYDOG_OBSERVABILITY_BIND": env.get("RAYDOG_OBSERVABILITY_BIND", "0.0.0.0")}
    if (
        launch.role == NodeRole.HEAD
        and placement == NodePlacement.SHARED_HOST
        and "OBSERVABILITY_HOST" in env
    ):
        # Nodes share this host: the head's metrics agent gets a port nobody was promised.
        return {"RAYDOG_PROMETHEUS_AGENT_PORT": str(free_ports(1)[0])}
    return {}


def remove_node_files(placement: NodePlacement, cluster_id: str) -> None:
    if placement == NodePlacement.SHARED_HOST:
        shutil.rmtree(node_files_root(cluster_id), ignore_errors=True)


def node_files_root(cluster_id: str) -> Path:
    """Short, per-cluster and derivable from the id alone, so a shut-down in another process cleans it."""
    return Path("/tmp") / f"rdy-{hashlib.sha1(cluster_id.encode()).hexdigest()[:10]}"
