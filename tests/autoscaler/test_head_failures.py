"""`ray up` whose head fails or is interrupted leaves nothing behind (real `ray` CLI, no Ray start needed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from autoscaler_cli import RAY, cluster_name, ray_cli, write_config

from raydog_core.backends.local.backend import LocalBackend
from raydog_core.processes import wait_until


def _running(backend: LocalBackend, name: str) -> list[str]:
    return [r.cluster_id for r in backend.list_clusters() if r.name == name and r.state == "running"]


def _default_interrupt() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextmanager
def ray_up_in_background(config: Path, backend: LocalBackend, name: str) -> Iterator[subprocess.Popen[str]]:
    """`ray up` running in the background, its output collected, to be interrupted by the test.

    The test asserts inside the block that nothing is left; if it fails first (a slow machine), the
    `ray up` process and its cluster are removed here, so the failure stays this test's own and never
    fails the leak checks of the tests after it."""
    env = dict(os.environ, RAY_UP_enable_autoscaler_v2="1", RAY_USAGE_STATS_ENABLED="0")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    proc = subprocess.Popen(
        [RAY, "up", "-y", "--no-config-cache", str(config)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        # Interrupts must reach it however the suite was started: a shell without job control starts a
        # background command (`nohup pytest ... &`) with SIGINT ignored, and children inherit that.
        preexec_fn=_default_interrupt,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for cluster_id in _running(backend, name):
            backend.shut_down(cluster_id)


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
    backend = LocalBackend(raydog_home / "local")
    with ray_up_in_background(config, backend, name) as proc:
        assert wait_until(lambda: bool(backend.live_resources()), 120, 0.2), "the head never started"
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, output
        assert _running(backend, name) == []
        assert backend.live_resources() == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupting_ray_up_after_the_head_exists_shuts_it_down(
    signum: int, raydog_home: Path, tmp_path: Path
) -> None:
    """The head is created and Ray's updater runs the setup commands when `ray up` is interrupted."""
    name = cluster_name("late")
    marker = tmp_path / "setup-started"
    config = write_config(tmp_path, name, head_setup_commands=[f"touch {marker} && sleep 120"])
    backend = LocalBackend(raydog_home / "local")
    with ray_up_in_background(config, backend, name) as proc:
        assert wait_until(marker.exists, 120, 0.2), "the setup commands never ran"
        assert _running(backend, name), "the head is not running while its setup commands run"
        started = time.monotonic()
        proc.send_signal(signum)
        output, _ = proc.communicate(timeout=120)
        assert proc.returncode != 0, output
        assert "did not finish: shutting down what it created" in output
        assert time.monotonic() - started < 60, "teardown waited for the setup command to finish"
        assert _running(backend, name) == []
        assert wait_until(lambda: backend.live_resources() == [], 30, 0.2), backend.live_resources()
