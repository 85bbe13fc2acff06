"""Cluster up and shut-down on the local backend, against a plain shell script doing the same `ray start`
calls one after another (the way people start a cluster by hand), measured side by side in one run.

Both sides start nodes with identical arguments (resources, explicit ports, own temp dir) and are
counted as up when the head's dashboard reports every node alive. Shut-down: RayDog's teardown
against SIGTERM-and-wait, which is what stopping a hand-started cluster without `ray stop` costs.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psutil

from raydog_core import RayDogCluster, processes
from raydog_core.backends.base import HeadPorts
from raydog_core.node_env import head_args, resource_args
from raydog_core.ports import free_ports
from raydog_core.ray_nodes import alive_ray_nodes
from raydog_core.spec import NodeResources
from raydog_core.state import ClusterState, HeadState

WORKER_COUNTS = (2, 4)
SIGTERM_PATIENCE_S = 30.0  # how long a hand-written teardown waits before SIGKILL


def _node_args(temp_dir: Path, index: int) -> list[str]:
    node_dir = temp_dir / f"n{index}"
    node_dir.mkdir()
    ports = free_ports(6)
    return [
        "--node-ip-address=127.0.0.1",
        f"--temp-dir={node_dir}",
        f"--node-manager-port={ports[0]}",
        f"--object-manager-port={ports[1]}",
        f"--metrics-export-port={ports[2]}",
        f"--runtime-env-agent-port={ports[3]}",
        f"--dashboard-agent-grpc-port={ports[4]}",
        f"--dashboard-agent-listen-port={ports[5]}",
        "--min-worker-port=0",
        "--max-worker-port=0",
        *resource_args(NodeResources(), 0),
    ]


def plain_script_up_and_down(workers: int) -> tuple[float, float]:
    """A shell script of sequential `ray start` calls; returns (seconds until all alive, seconds to stop)."""
    temp_dir = Path("/tmp") / f"rb-{secrets.token_hex(3)}"
    temp_dir.mkdir()
    gcs, dashboard, client = free_ports(3)
    ray = str(Path(sys.executable).parent / "ray")
    lines = [
        f"{ray} start --head --port={gcs} "
        + " ".join(_node_args(temp_dir, 0) + head_args(HeadPorts(gcs, dashboard, client), True, "127.0.0.1"))
    ]
    lines += [
        f"{ray} start --address=127.0.0.1:{gcs} " + " ".join(_node_args(temp_dir, i + 1))
        for i in range(workers)
    ]
    script = temp_dir / "start.sh"
    script.write_text("set -e\n" + "\n".join(lines) + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")} | {"RAY_AUTH_MODE": "disabled"}
    state = ClusterState(
        backend="local",
        cluster_id="bench",
        cluster_name="bench",
        cluster_namespace="bench",
        head=HeadState(private_ip="127.0.0.1", gcs_port=gcs, dashboard_port=dashboard),
    )
    with tempfile.TemporaryDirectory() as work:
        started = time.monotonic()
        proc, ref = processes.start_session(["bash", str(script)], env, work, str(Path(work) / "log"))
        proc.wait(300)
        processes.wait_until(
            lambda: len(alive_ray_nodes(state.dashboard_url or "", None)) == workers + 1, 300, 0.1
        )
        up = time.monotonic() - started
        members = processes.session_members([ref])
        stop_started = time.monotonic()
        for member in members:
            member.terminate()
        psutil.wait_procs(members, timeout=SIGTERM_PATIENCE_S)
        processes.stop_sessions([ref])  # SIGKILL whatever ignored SIGTERM that long
        down = time.monotonic() - stop_started
    shutil.rmtree(temp_dir, ignore_errors=True)
    return up, down


def raydog_up_and_down(workers: int) -> tuple[float, float]:
    cluster = RayDogCluster(cluster_name="bench", ray_auth_mode="disabled")
    cluster.add_worker_pool(worker_pool_node_count=workers)
    started = time.monotonic()
    cluster.build()
    up = time.monotonic() - started
    stop_started = time.monotonic()
    cluster.shut_down()
    return up, time.monotonic() - stop_started


def run() -> dict:
    results = {}
    for workers in WORKER_COUNTS:
        anchor_up, anchor_down = plain_script_up_and_down(workers)
        raydog_up, raydog_down = raydog_up_and_down(workers)
        results[f"head+{workers}"] = {
            "raydog_up_s": round(raydog_up, 2),
            "plain_script_up_s": round(anchor_up, 2),
            "up_ratio": round(raydog_up / anchor_up, 3),
            "raydog_down_s": round(raydog_down, 2),
            "sigterm_wait_down_s": round(anchor_down, 2),
            "down_ratio": round(raydog_down / anchor_down, 3),
        }
    return {"cluster_up": results}


if __name__ == "__main__":
    os.environ.setdefault("RAYDOG_HOME", tempfile.mkdtemp(prefix="raydog-bench-"))
    for name, row in run()["cluster_up"].items():
        print(name, row)
