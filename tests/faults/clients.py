"""Client processes for fault tests: the `raydog` CLI and small builder scripts, run as subprocesses so
that a test can kill them the way a CI runner, an OOM killer or a user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from raydog_core import RayDogClusterProxy
from raydog_core.backends.base import NodeRole, NodeStatus
from raydog_core.errors import RayDogError
from raydog_core.processes import wait_until
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator

BIN = Path(sys.executable).parent
RAYDOG = str(BIN / "raydog")
SLEEPING_HEAD = "#!/bin/bash\nexec sleep 600\n"  # a head that never becomes Ray: the build keeps waiting
NAMESPACE = "raydog-faults"


def yellowdog_env(emulator: Emulator) -> dict[str, str]:
    """What a client process needs to reach the emulator: the documented YD_API_* variables and the
    node placement (its instances are processes on this host)."""
    return emulator.environment()


def backend_fields(backend: str) -> dict[str, Any]:
    if backend == "local":
        return {"backend": "local"}
    return {
        "backend": "yellowdog",
        "cluster_namespace": NAMESPACE,
        "head_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
    }


def write_spec(directory: Path, name: str, backend: str, **fields: Any) -> Path:
    spec = {"cluster_name": name, **backend_fields(backend), **fields}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def client_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, **(extra or {}))
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return env


def raydog(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the `raydog` command to completion (recovery commands: down, reap, status)."""
    return subprocess.run(
        [RAYDOG, *args],
        env=client_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def start(argv: list[str], env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """A client process the test will signal; its output is kept for the assertion messages."""
    return subprocess.Popen(
        argv,
        env=client_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def signal_and_wait(proc: subprocess.Popen[str], sig: signal.Signals, timeout: float = 60) -> str:
    """Send `sig`, wait for the process to end (killing it if it will not) and return its output."""
    proc.send_signal(sig)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
        raise AssertionError(f"the client did not exit within {timeout} s of {sig.name}:\n{output}") from None
    return output


def head_running(state_file: Path) -> bool:
    """True once the saved state names a head node that the backend reports running."""
    if not state_file.is_file():
        return False
    proxy = RayDogClusterProxy()
    try:
        proxy.load_saved_state_from_json_file(state_file)
        return any(n.role == NodeRole.HEAD and n.status == NodeStatus.RUNNING for n in proxy.nodes())
    except (RayDogError, ValueError):  # the file is being written
        return False


def wait_for_head(state_file: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    if not wait_until(lambda: proc.poll() is not None or head_running(state_file), timeout, 0.3):
        raise AssertionError(f"no running head in {state_file} within {timeout} s")
    if proc.poll() is not None:
        raise AssertionError(f"the client exited early ({proc.returncode}):\n{proc.communicate()[0]}")


# -- `ray up` -----------------------------------------------------------------------------------------


def ray_up_config(directory: Path, name: str, backend: str, **changes: Any) -> Path:
    """examples/autoscaler/local.yaml, test-sized, for either backend; `changes` are dotted paths."""
    from tests.autoscaler.autoscaler_cli import write_config

    if backend == "yellowdog":
        template = {"compute_requirement_template": DEFAULT_TEMPLATES[0]}
        changes = {
            "provider.backend": "yellowdog",
            "provider.cluster_namespace": NAMESPACE,
            "available_node_types.ray_head_default.node_config": template,
            "available_node_types.ray_worker_small.node_config": template,
            **changes,
        }
    return write_config(directory, name, **changes)


def start_ray(*args: str) -> subprocess.Popen[str]:
    """The real `ray` CLI as a client process the test will signal."""
    return start(
        [str(BIN / "ray"), *args], {"RAY_UP_enable_autoscaler_v2": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    )
