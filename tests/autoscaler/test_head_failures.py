"""`ray up` whose head fails or is interrupted leaves nothing behind (real `ray` CLI, no Ray start needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from autoscaler_cli import RAY, cluster_name, ray_cli, write_config

from raydog_core.backends.local.backend import LocalBackend
from raydog_core.processes import wait_until


def _running(backend: LocalBackend, name: str) -> list[str]:
    return [r.cluster_id for r in backend.list_clusters() if r.name == name and r.state == "running"]


def test_a_failing_head_script_fails_ray_up_with_its_log_and_cleans_up(
    raydog_home: Path, tmp_path: Path
) -> None:
    name = cluster_name("fail")
    config = write_config(
        tmp_path,
        name,
        **{"provider.ray_head_node_task_script": "#!/bin/bash\necho 'broken head' >&2\nexit 3\n"},
    )
    result = ray_cli("up", "-y", "--no-config-cache", str(config), check=False, timeout=120)
    assert result.returncode != 0
    assert "broken head" in result.stdout + result.stderr
    backend = LocalBackend(raydog_home / "local")
    assert _running(backend, name) == []
    assert backend.live_resources() == []


def test_ctrl_c_during_ray_up_shuts_down_what_was_created(raydog_home: Path, tmp_path: Path) -> None:
    name = cluster_name("intr")
    config = write_config(
        tmp_path, name, **{"provider.ray_head_node_task_script": "#!/bin/bash\nsleep 120\n"}
    )
    env = dict(os.environ, RAY_UP_enable_autoscaler_v2="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    proc = subprocess.Popen(
        [RAY, "up", "-y", "--no-config-cache", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    backend = LocalBackend(raydog_home / "local")
    try:
        assert wait_until(lambda: bool(backend.live_resources()), 60, 0.2), "the head never started"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert _running(backend, name) == []
    assert backend.live_resources() == []
