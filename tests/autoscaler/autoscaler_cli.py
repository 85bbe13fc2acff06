"""Helpers for driving the real `ray` CLI against RayDogNodeProvider on the local backend."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "autoscaler" / "local.yaml"
RAY = str(Path(sys.executable).parent / "ray")


def cluster_name(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def write_config(directory: Path, name: str, **changes: Any) -> Path:
    """examples/autoscaler/local.yaml with test-sized settings; `changes` are dotted-path overrides."""
    config = yaml.safe_load(EXAMPLE.read_text())
    config["cluster_name"] = name
    for dotted, value in changes.items():
        target = config
        *parents, last = dotted.split(".")
        for part in parents:
            target = target[part]
        target[last] = value
    shutil.copy(EXAMPLE.parent / "scale_up.py", directory / "scale_up.py")
    path = directory / "cluster.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ray_cli(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `ray <args>` from this venv as a subprocess (RAYDOG_HOME comes from the environment)."""
    env = dict(os.environ, RAY_UP_enable_autoscaler_v2="1", RAY_USAGE_STATS_ENABLED="0")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run(
        [RAY, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"ray {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result
