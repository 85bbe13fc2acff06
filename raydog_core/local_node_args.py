"""`ray start` arguments that let several Ray nodes share one host, used by every backend whose nodes
run on this machine (the local backend, and the YellowDog backend with `shared_host` placement).

Nodes starting at the same moment on one host otherwise race for the ports Ray picks itself and for
log file names in a shared temp dir; and a worker without `--temp-dir` adopts the head's.
"""

from __future__ import annotations

from pathlib import Path

from raydog_core.ports import free_ports

LOOPBACK = "127.0.0.1"


def local_node_args(temp_dir: Path, ip: str = LOOPBACK) -> list[str]:
    """The node's own temp dir and explicit free ports (keep `temp_dir` short: Unix sockets live below it)."""
    node_manager, object_manager, metrics, runtime_env, agent_grpc, agent_http = free_ports(6)
    return [
        f"--node-ip-address={ip}",
        f"--temp-dir={temp_dir}",
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={runtime_env}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--dashboard-agent-listen-port={agent_http}",
        "--min-worker-port=0",
        "--max-worker-port=0",
    ]
