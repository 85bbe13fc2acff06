"""The environment every node script gets, the same on every backend.

Scripts start Ray with `ray start ... $RAYDOG_RAY_START_ARGS --block`; the arguments carry the node's
resources (and, locally, its ports and temp dir), so one script works on YellowDog and on a laptop.

| variable | for | meaning |
| --- | --- | --- |
| `RAY_HEAD_IP` (`RAY_HEAD_NODE_PRIVATE_IP`, deprecated) | workers | head's private IP |
| `RAYDOG_GCS_PORT` | all | the head's GCS port |
| `RAYDOG_RAY_START_ARGS` | all | extra `ray start` arguments for this node |
| `OBSERVABILITY_HOST` | head, workers | the observability node's private IP, when there is one |
| `RAYDOG_PROMETHEUS_PORT`, `RAYDOG_GRAFANA_PORT` | all, with observability | where the observability node's Prometheus (remote-write receiver) and Grafana listen: 9090/3000 on YellowDog, free ports locally |
| `RAYDOG_PROMETHEUS_AGENT_PORT` | head, with observability | loopback port of the head's Prometheus agent (set where nodes share a host; else a free one) |
| `RAYDOG_OBSERVABILITY_BIND` | observability | address Prometheus and Grafana bind: 127.0.0.1 (default, nodes on one host), 0.0.0.0 on YellowDog (the head pushes and tunnels arrive over the private network; both ask for the password) |
| `RAYDOG_OBSERVABILITY_PASSWORD` | head, observability | the cluster's observability password (Prometheus user `raydog`, Grafana `admin`); the scripts move it to a private file and unset it |
| `RAYDOG_PROMETHEUS_PASSWORD_HASH` | observability | its bcrypt hash, for Prometheus' web config |
| `RAYDOG_CLUSTER_NAME`, `RAYDOG_ROLE`, `RAYDOG_NODE_ID` | all | who this node is |
| `RAY_AUTH_MODE` (+ `RAY_AUTH_TOKEN`) | all | Ray token authentication, always explicit |
| `RAY_preload_python_modules` | head, workers, with `worker_preload_modules` | modules every Ray worker of the node imports as it starts |
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from raydog_core.backends.base import HeadPorts, NodeRole, ObservabilityPorts
from raydog_core.spec import NodeResources

# Inherited variables that would silently change what a new raylet does (ray-autoscaler.md §6).
_INHERITED_RAY_PREFIXES = ("RAY_",)
_KEPT_RAY_VARIABLES: frozenset[str] = frozenset()


def clean_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """`base` (default: os.environ) without any RAY_* variable; callers then set what they need."""
    source = os.environ if base is None else base
    return {
        key: value
        for key, value in source.items()
        if not key.startswith(_INHERITED_RAY_PREFIXES) or key in _KEPT_RAY_VARIABLES
    }


def resource_args(resources: NodeResources, num_gpus: int) -> list[str]:
    """`ray start` arguments that pin what the node advertises (never the whole machine)."""
    args = [
        f"--num-cpus={resources.num_cpus}",
        f"--num-gpus={num_gpus}",
        f"--memory={resources.memory_mb * 1024 * 1024}",
        f"--object-store-memory={resources.object_store_mb * 1024 * 1024}",
        "--disable-usage-stats",
    ]
    if resources.resources:
        args.append(f"--resources={json.dumps(resources.resources, separators=(',', ':'))}")
    return args


def head_args(ports: HeadPorts, include_dashboard: bool, dashboard_host: str) -> list[str]:
    args = [f"--ray-client-server-port={ports.client}"]
    if include_dashboard:
        args += [
            "--include-dashboard=true",
            f"--dashboard-port={ports.dashboard}",
            f"--dashboard-host={dashboard_host}",
        ]
    else:
        args.append("--include-dashboard=false")
    return args


def role_environment(
    cluster_name: str,
    role: NodeRole,
    gcs_port: int,
    auth_mode: str,
    head_ip: str | None = None,
    observability_host: str | None = None,
    observability_ports: ObservabilityPorts | None = None,
) -> dict[str, str]:
    """The part of a node's environment that depends only on its role in the cluster.

    `observability_ports` go to every node of a cluster with an observability node: that node serves on
    them, the head pushes metrics to them, and a custom worker script may push there too.
    """
    env = {
        "RAYDOG_CLUSTER_NAME": cluster_name,
        "RAYDOG_ROLE": role.value,
        "RAYDOG_GCS_PORT": str(gcs_port),
        "RAY_AUTH_MODE": auth_mode,
    }
    if head_ip and role == NodeRole.WORKER:
        env["RAY_HEAD_IP"] = head_ip
        env["RAY_HEAD_NODE_PRIVATE_IP"] = head_ip
    if observability_host and role != NodeRole.OBSERVABILITY:
        env["OBSERVABILITY_HOST"] = observability_host
    if observability_ports is not None:
        env["RAYDOG_PROMETHEUS_PORT"] = str(observability_ports.prometheus)
        env["RAYDOG_GRAFANA_PORT"] = str(observability_ports.grafana)
    return env


def join_args(args: list[str]) -> str:
    """One string for RAYDOG_RAY_START_ARGS; scripts expand it unquoted, so no argument may hold a space."""
    for arg in args:
        if any(ch.isspace() for ch in arg):
            raise ValueError(f"ray start argument {arg!r} contains white space")
    return " ".join(args)
