"""`plan()` on the local backend: node sizes, no cost, nothing started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    local = raydog_home / "local"
    before = sorted(local.iterdir()) if local.exists() else []  # the session's earlier clusters
    plan = cluster.plan()
    assert plan.ok and plan.backend == "local" and plan.currency is None
    assert [(p.pool, p.count, p.resources.num_cpus, p.machine) for p in plan.pools] == [
        ("head", 1, 1, "this machine"),
        ("worker_pools.0", 2, 2, "this machine"),
    ]
    assert plan.cost_per_hour == 0 and plan.worst_case_cost == 0 and plan.node_count == 3
    assert "2048 MB" in plan.table() and "unbounded" in plan.table()
    assert (sorted(local.iterdir()) if local.exists() else []) == before, "plan() created a cluster"


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


def test_local_shut_down_reports_node_hours_and_list_shows_them(
    raydog_home: Path, local_backend: Any
) -> None:
    """Node-hours from the local manifest (each node from its start to its stop), at no cost; `raydog list
    --all` shows them for the finished cluster."""
    from click.testing import CliRunner

    from raydog_core.cli import main

    cluster = RayDogCluster(
        cluster_name="localused", head_node_ray_start_script="#!/bin/bash\nexec sleep 600\n"
    )
    try:
        cluster.build(wait_for_head=False)
    finally:
        usage = cluster.shut_down()
    assert usage is not None and usage.cost == 0 and usage.currency is None
    assert 0 < usage.node_hours < 1
    assert cluster.state.usage is not None and cluster.state.usage.node_hours == usage.node_hours
    listing = CliRunner().invoke(main, ["list", "--all"]).output
    line = next(line for line in listing.splitlines() if line.startswith("localused "))
    assert "stopped" in line and "node-hours, cost 0.00" in line
    assert "USED" not in CliRunner().invoke(main, ["list"]).output
