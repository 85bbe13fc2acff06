"""The `raydog` command end to end: up, status, add-pool, remove-pool, down, list, reap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def raydog(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "raydog_core.cli", *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"raydog {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def test_cluster_lifecycle_from_the_command_line(tmp_path: Path, local_backend) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        "cluster_name: clitest\n"
        "cluster_labels: {team: data, run: r1}\n"
        "worker_pools:\n"
        "  - worker_pool_node_count: 1\n"
        "    worker_pool_internal_name: base\n"
    )
    state_file = tmp_path / "clitest.json"
    up = raydog("up", str(spec), "--state-file", str(state_file))
    assert "ray address:" in up.stdout and "raydog down" in up.stdout
    state = json.loads(state_file.read_text())
    assert state["phase"] == "running" and len(state["pools"]) == 2

    status = raydog("status", str(state_file))
    assert status.stdout.count("running") >= 2

    # The added pools' nodes are stand-ins that start no Ray: what is under test is the pools' bookkeeping
    # (ids, names, state file), not Ray joining, which the `up` above proved with the base pool.
    stand_in = tmp_path / "stand_in_worker.sh"
    stand_in.write_text("#!/usr/bin/env bash\nexec sleep 600\n")
    add_pool = ("add-pool", str(state_file), "--nodes", "1", "--script", str(stand_in))
    pool = raydog(*add_pool, "--name", "burst").stdout.strip()
    assert pool == "clitest-w2"
    assert len(json.loads(state_file.read_text())["pools"]) == 3
    raydog("remove-pool", str(state_file), "burst")
    assert [
        p["internal_name"] for p in json.loads(state_file.read_text())["pools"] if p["role"] == "worker"
    ] == ["base"]
    again = raydog(*add_pool, "--name", "again").stdout.strip()
    assert again == "clitest-w3"  # a removed pool's id is never reused
    raydog("remove-pool", str(state_file), "clitest-w3")

    listing = raydog("list").stdout
    assert "clitest" in listing and "team=data" in listing
    dry = raydog("reap", "--label", "run=r1", "--dry-run").stdout
    assert "would shut down clitest" in dry
    assert local_backend.live_resources()  # the dry run changed nothing
    assert "clitest" not in raydog("reap", "--label", "run=other").stdout

    down = raydog("down", str(state_file)).stdout
    assert json.loads(state_file.read_text())["phase"] == "shut_down"
    assert local_backend.live_resources() == []
    raydog("down", str(state_file))  # idempotent

    # The post-mortem outlives the cluster: status and down point to it, `raydog logs` opens it.
    assert "post-mortem:" in down and "post-mortem:" in raydog("status", str(state_file)).stdout
    shown = raydog("logs", str(state_file)).stdout
    assert "shut down from its saved state" in shown, shown
    assert shown.count("| worker | terminated |") == 3 and shown.count("| head | terminated |") == 1, shown
    assert "logs/clitest-head-n1.log" in shown and "raylet.out" in shown, shown
    extracted = tmp_path / "post-mortem"
    raydog("logs", str(state_file), "--extract", str(extracted))
    assert "raylet" in "".join(p.name for p in extracted.rglob("*.out"))
    assert "no post-mortem" in raydog("logs", "nosuchcluster", check=False).stderr


def test_cli_errors_are_one_clear_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: Bad_Name\n")
    result = raydog("up", str(bad), check=False)
    assert result.returncode != 0
    assert "cluster_name" in result.stderr and "Traceback" not in result.stderr
    missing = raydog("down", str(tmp_path / "none.json"), check=False)
    assert "cannot read saved cluster state" in missing.stderr and "Traceback" not in missing.stderr
    assert "give at least one" in raydog("reap", check=False).stderr


def test_plugged_in_commands_load_only_when_run() -> None:
    """The emulator command comes through the `raydog.commands` entry point, imported on use only."""
    probe = (
        "import sys, raydog_core.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('raydog_core.testing', 'raydog_prefect', "
        "'raydog_airflow'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
    assert "emulator" in raydog("--help").stdout
    assert "--error-rate" in raydog("emulator", "--help").stdout


def test_run_finished_checks_plug_in_by_name() -> None:
    """`--run-finished` lists the installed checks; a missing integration is one line with the fix."""
    help_text = raydog("reap", "--help").stdout
    assert "[airflow|prefect]" in help_text
    env_without_url = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    for source in ("prefect", "airflow"):
        result = subprocess.run(
            [sys.executable, "-m", "raydog_core.cli", "reap", "--run-finished", source, "--dry-run"],
            capture_output=True,
            text=True,
            env=env_without_url,
            timeout=120,
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert f"raydog[{source}]" in result.stderr or "PREFECT_API_URL" in result.stderr
