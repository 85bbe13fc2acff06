"""`plan()` on the local backend: node sizes, no cost, nothing started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from raydog_core import RayDogCluster
from raydog_core.errors import SpecError


def test_local_plan_shows_node_sizes_at_no_cost(raydog_home: Path) -> None:
    cluster = RayDogCluster(
        cluster_name="localplan",
        worker_pools=[
            {"worker_pool_node_count": 2, "worker_node_resources": {"num_cpus": 2, "memory_mb": 2048}}
        ],
    )
    plan = cluster.plan()
    assert plan.ok and plan.backend == "local" and plan.currency is None
    assert [(p.pool, p.count, p.resources.num_cpus, p.machine) for p in plan.pools] == [
        ("head", 1, 1, "this machine"),
        ("worker_pools.0", 2, 2, "this machine"),
    ]
    assert plan.cost_per_hour == 0 and plan.worst_case_cost == 0 and plan.node_count == 3
    assert "2048 MB" in plan.table() and "unbounded" in plan.table()
    assert not (raydog_home / "local").exists() or not any((raydog_home / "local").iterdir())


def test_local_plan_refuses_more_gpus_than_the_machine_has(raydog_home: Path) -> None:
    cluster = RayDogCluster(
        cluster_name="gpuplan",
        gpu_ids=[0],
        worker_pools=[{"worker_pool_node_count": 2, "worker_node_resources": {"num_gpus": 1}}],
    )
    with pytest.raises(SpecError, match="num_gpus"):
        cluster.plan()


def test_raydog_plan_command_locally(tmp_path: Path, raydog_home: Path) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text("cluster_name: cliplan\nworker_pools:\n  - worker_pool_node_count: 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "raydog_core.cli", "plan", str(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, "RAYDOG_HOME": str(raydog_home)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "plan for cluster cliplan (local)" in result.stdout
    assert "3 node(s); estimated cost per hour: 0.00" in result.stdout
