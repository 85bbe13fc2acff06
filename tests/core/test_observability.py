"""The observability node starts before the head, and head and workers get its IP as OBSERVABILITY_HOST
(seed 002), on both backends. A stand-in observability script keeps the test independent of
Prometheus being installed; the default script is checked for its clear error when it is not."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.request
from typing import Any

import psutil
import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raydog_core import RayDogCluster
from raydog_core.backends import NodeRole
from raydog_core.scripts import default_script
from raydog_core.testing.emulator import DEFAULT_TEMPLATES

pytestmark = pytest.mark.slow
OBSERVABILITY = "#!/usr/bin/env bash\necho observability node up\nexec sleep 600\n"


@ray.remote(num_cpus=0)
def observability_host() -> str | None:
    return os.environ.get("OBSERVABILITY_HOST")


def backend_kwargs(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "local":
        return {}
    emulator = request.getfixturevalue("yellowdog_emulator")
    return {
        "backend": "yellowdog",
        **emulator.cluster_kwargs(),
        "head_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
        "observability_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
    }


@pytest.mark.parametrize("kind", ["local", "yellowdog"])
def test_observability_node_first_and_its_ip_everywhere(kind: str, request, raydog_home) -> None:
    worker_template = (
        {"worker_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0]} if kind != "local" else {}
    )
    with RayDogCluster(
        cluster_name=f"obs-{kind[:5]}",
        enable_observability=True,
        observability_node_start_script=OBSERVABILITY,
        **backend_kwargs(kind, request),
    ) as cluster:
        cluster.add_worker_pool(worker_pool_node_count=1, **worker_template)
        cluster.build()
        roles = [pool.role for pool in cluster.state.pools]
        assert roles[0] == "head" and "observability" in roles
        observability = next(n for n in cluster.nodes() if n.role == NodeRole.OBSERVABILITY)
        assert cluster.state.observability_host == observability.private_ip
        ray.init(address=cluster.ray_address)
        try:
            nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            seen = ray.get(
                [
                    observability_host.options(
                        scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)
                    ).remote()
                    for n in nodes
                ]
            )
        finally:
            ray.shutdown()
        assert len(nodes) == 2 and seen == [observability.private_ip] * 2


def test_default_observability_script_says_what_is_missing(tmp_path) -> None:
    script = tmp_path / "observability.sh"
    script.write_text(default_script("observability"))
    result = subprocess.run(
        ["/bin/bash", str(script)],
        env={"PATH": "/nonexistent", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1 and "prometheus is not installed" in result.stderr


@pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="needs Prometheus (scripts/bootstrap.sh installs it)"
)
def test_default_observability_script_runs_prometheus(local_backend) -> None:
    with RayDogCluster(cluster_name="obs-default", enable_observability=True) as cluster:
        cluster.build()
        observability = next(n for n in cluster.nodes() if n.role == NodeRole.OBSERVABILITY)
        assert cluster.state.observability_host == observability.private_ip
        ports = prometheus_ports()
        assert ports, "no Prometheus listening"
        assert all(port not in (9090, 3000) for port in ports)  # free ports on a shared machine
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/-/ready", timeout=10) as response:
            assert b"Ready" in response.read()
    assert local_backend.live_resources() == []


def prometheus_ports() -> list[int]:
    ports = []
    for connection in psutil.net_connections("tcp"):
        if connection.status != psutil.CONN_LISTEN or not connection.pid:
            continue
        try:
            if psutil.Process(connection.pid).name() == "prometheus":
                ports.append(connection.laddr.port)
        except psutil.Error:
            continue
    return ports
