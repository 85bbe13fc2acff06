"""Every TCP listener a RayDog local cluster opens is on loopback, except Ray's own servers, which Ray
binds to the node's IP or to every interface with no option to change it (docs/security.md); those
refuse clients without the cluster's Ray token. The emulator listens on loopback only."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from raydog_core import RayDogCluster, processes
from raydog_core.testing.emulator import Emulator

pytestmark = pytest.mark.slow

LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
# Ray's own servers, recognised by their command lines: GCS, raylet, dashboard head's gRPC server and agents,
# the autoscaler monitor's metrics, the Ray client server (Ray binds it to the node IP), workers.
RAY_OWN_SERVERS = (
    "gcs_server",
    "raylet",
    "ray::",
    "ray/dashboard/dashboard.py",
    "ray/autoscaler/_private/monitor.py",
    "ray.util.client.server",
    "default_worker.py",
)


def listeners(pids: set[int]) -> list[tuple[str, int, psutil.Process]]:
    """(ip, port, process) of every TCP socket in LISTEN state owned by one of `pids`."""
    found = []
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                found.append((conn.laddr.ip, conn.laddr.port, psutil.Process(conn.pid)))
            except psutil.NoSuchProcess:
                continue
    return found


def command_line(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline()) or proc.name()
    except psutil.Error:
        return ""


@pytest.fixture(scope="module")
def head_only(raydog_home: Path) -> Iterator[RayDogCluster]:
    cluster = RayDogCluster(cluster_name="sockets")
    cluster.build()
    try:
        yield cluster
    finally:
        cluster.shut_down()


def cluster_processes(raydog_home: Path, cluster: RayDogCluster) -> list[psutil.Process]:
    manifest = json.loads((raydog_home / "local" / cluster.state.cluster_id / "cluster.json").read_text())
    refs = [processes.ProcessRef.from_dict(node["process"]) for node in manifest["nodes"].values()]
    return processes.session_members(refs)


def test_only_rays_own_servers_listen_beyond_loopback(raydog_home: Path, head_only: RayDogCluster) -> None:
    members = cluster_processes(raydog_home, head_only)
    found = listeners({proc.pid for proc in members})
    assert found, "the cluster's processes should be listening (psutil sees no sockets?)"
    exposed = [
        f"{ip}:{port} {command_line(proc)[:120]}"
        for ip, port, proc in found
        if ip not in LOOPBACK and not any(name in command_line(proc) for name in RAY_OWN_SERVERS)
    ]
    assert not exposed, f"non-Ray listeners beyond loopback: {exposed}"


def test_the_dashboard_raydog_configures_is_on_loopback_only(
    raydog_home: Path, head_only: RayDogCluster
) -> None:
    port = head_only.state.head.dashboard_port
    members = cluster_processes(raydog_home, head_only)
    on_port = [ip for ip, p, _ in listeners({proc.pid for proc in members}) if p == port]
    assert on_port and set(on_port) <= LOOPBACK, on_port
    assert urlsplit(head_only.dashboard_url).hostname == "127.0.0.1"


def test_emulator_listens_on_loopback_only() -> None:
    with Emulator() as emulator:
        port = urlsplit(emulator.url).port
        on_port = [ip for ip, p, _ in listeners({psutil.Process().pid}) if p == port]
    assert on_port and set(on_port) <= LOOPBACK, on_port
