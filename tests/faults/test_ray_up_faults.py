"""`ray up` faults that need no Ray: the head never comes up in time, its script fails, the `ray` client
is terminated or killed while it creates the head, and a stale cluster whose head died meanwhile.
Real `ray` CLI, RayDogNodeProvider, both backends; each case ends with the leak count."""

from __future__ import annotations

import secrets
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from raydog_core.backends import Backend, create_backend
from raydog_core.backends.base import NodeRole, NodeStatus
from raydog_core.processes import wait_until
from raydog_core.testing.emulator import Emulator
from raydog_core.testing.faults import kill_node
from raydog_core.testing.leaks import count_leaks
from tests.autoscaler.autoscaler_cli import ray_cli
from tests.faults.clients import SLEEPING_HEAD, ray_up_config, signal_and_wait, start_ray

BACKENDS = ("local", "yellowdog")
FAILING_HEAD = "#!/bin/bash\necho 'broken head' >&2\nexit 3\n"


def cells(fault: str, backends: tuple[str, ...] = BACKENDS, known: dict | None = None) -> list:
    return [
        pytest.param(
            backend,
            marks=[pytest.mark.fault_case("ray_up", backend, fault), *(known or {}).get(backend, [])],
            id=backend,
        )
        for backend in backends
    ]


@pytest.fixture
def backend_api(env: dict, emulator_or_none: Emulator | None) -> Iterator[Backend]:
    """The backend as the provider sees it, to watch the cluster `ray up` creates."""
    if emulator_or_none is None:
        backend = create_backend("local")
    else:
        backend = create_backend("yellowdog", emulator_or_none.credentials())
    yield backend
    backend.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


def running_head(backend: Backend, name: str) -> tuple[str, str] | None:
    """(cluster id, head node id) of the running cluster `name` whose head runs, if any."""
    for record in backend.list_clusters():
        if record.name == name and record.state == "running":
            for node in backend.list_nodes(record.cluster_id):
                if node.role == NodeRole.HEAD and node.status == NodeStatus.RUNNING:
                    return record.cluster_id, node.node_id
    return None


def sleeping_head_config(tmp_path: Path, name: str, backend: str, **changes) -> Path:
    return ray_up_config(
        tmp_path, name, backend, **{"provider.ray_head_node_task_script": SLEEPING_HEAD, **changes}
    )


def interrupted_up(
    tmp_path: Path, backend: str, backend_api: Backend, sig: signal.Signals
) -> tuple[str, Path, str]:
    """Start `ray up` with a head that never becomes ready, wait for the head, send `sig`."""
    name = unique(sig.name.lower())
    config = sleeping_head_config(tmp_path, name, backend)
    client = start_ray("up", "-y", "--no-config-cache", str(config))
    try:
        assert wait_until(lambda: client.poll() is not None or running_head(backend_api, name), 90, 0.3), (
            "the head never started"
        )
        assert client.poll() is None, client.communicate()[0]
        return name, config, signal_and_wait(client, sig)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()


@pytest.mark.parametrize("backend", cells("build_timeout"))
def test_a_head_that_is_never_ready_times_out_and_leaves_nothing(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks
) -> None:
    """`head_node_build_timeout_minutes` bounds `ray up`: the error says so, and what was created goes."""
    config = sleeping_head_config(
        tmp_path, unique("slow"), backend, **{"provider.head_node_build_timeout_minutes": 0.05}
    )
    result = ray_cli("up", "-y", "--no-config-cache", str(config), check=False, timeout=120)
    assert result.returncode != 0
    assert "was not up within 0.05 minutes" in result.stdout + result.stderr, result.stderr[-2000:]
    fault_leaks.assert_none(emulator=emulator_or_none)


@pytest.mark.parametrize("backend", cells("head_script_fails"))
def test_a_failing_head_script_fails_ray_up_with_its_error(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks
) -> None:
    config = ray_up_config(
        tmp_path, unique("fail"), backend, **{"provider.ray_head_node_task_script": FAILING_HEAD}
    )
    result = ray_cli("up", "-y", "--no-config-cache", str(config), check=False, timeout=120)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "head" in output and "code 3" in output, output[-2000:]
    fault_leaks.assert_none(emulator=emulator_or_none)


@pytest.mark.parametrize("backend", ["yellowdog"])
def test_a_head_template_giving_spot_instances_is_refused_before_anything_exists(
    backend: str, env: dict, yellowdog_emulator, tmp_path: Path, fault_leaks
) -> None:
    """The head never runs on spot by default (a reclaimed head ends the cluster): `ray up` names the
    YAML field and the switch that allows it, and creates nothing."""
    yellowdog_emulator.platform.add_template("raydog/up-spot-first", spot=True, then_on_demand=True)
    config = ray_up_config(
        tmp_path,
        unique("spothead"),
        backend,
        **{
            "available_node_types.ray_head_default.node_config.compute_requirement_template": "raydog/up-spot-first"
        },
    )
    result = ray_cli("up", "-y", "--no-config-cache", str(config), check=False, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "available_node_types.ray_head_default.node_config.compute_requirement_template" in output, output[
        -2000:
    ]
    assert "spot-first" in output and "head_node_allow_spot" in output, output[-2000:]
    fault_leaks.assert_none(emulator=yellowdog_emulator)


@pytest.mark.parametrize("backend", cells("client_sigterm"))
def test_sigterm_while_ray_up_creates_the_head_leaves_nothing(
    backend: str, env: dict, emulator_or_none, backend_api: Backend, tmp_path: Path, fault_leaks
) -> None:
    """Like Ctrl+C: the provider shuts down what it created before `ray up` ends."""
    name, _, _ = interrupted_up(tmp_path, backend, backend_api, signal.SIGTERM)
    try:
        fault_leaks.assert_none(emulator=emulator_or_none, wait_s=5)
    finally:
        shut_down_left(backend_api, name)


@pytest.mark.parametrize("backend", cells("client_sigkill"))
def test_sigkill_of_ray_up_is_recovered_by_ray_down(
    backend: str, env: dict, emulator_or_none, backend_api: Backend, tmp_path: Path, fault_leaks
) -> None:
    """Killed outright, `ray up` leaves its head; `ray down` with the same YAML removes all of it."""
    name, config, _ = interrupted_up(tmp_path, backend, backend_api, signal.SIGKILL)
    try:
        assert count_leaks(emulator=emulator_or_none, wait_s=0).total > 0, "SIGKILL left nothing: no fault"
        down = ray_cli("down", "-y", str(config), check=False)
        assert down.returncode == 0, down.stderr[-2000:]
        fault_leaks.assert_none(emulator=emulator_or_none)
    finally:
        shut_down_left(backend_api, name)


@pytest.mark.parametrize("backend", cells("stale_state"))
def test_a_cluster_whose_head_died_is_removed_by_the_next_ray_command(
    backend: str, env: dict, emulator_or_none, backend_api: Backend, tmp_path: Path, fault_leaks
) -> None:
    """Stale state: the backend still lists the cluster of a killed `ray up`, but its head has died
    since. `ray down` (or the next `ray up`) finds it by exact name and removes it."""
    name, config, _ = interrupted_up(tmp_path, backend, backend_api, signal.SIGKILL)
    cluster_id, head_id = running_head(backend_api, name)
    try:
        kill_node(
            cluster_id,
            head_id,
            local=backend_api if emulator_or_none is None else None,
            emulator=emulator_or_none,
        )
        assert wait_until(lambda: running_head(backend_api, name) is None, 30), "the head did not die"
        down = ray_cli("down", "-y", str(config), check=False)
        assert down.returncode == 0, down.stderr[-2000:]
        assert not [r for r in backend_api.list_clusters() if r.name == name and r.state == "running"]
        fault_leaks.assert_none(emulator=emulator_or_none, wait_s=5)
    finally:
        shut_down_left(backend_api, name)
        if emulator_or_none is not None:
            backend_api.shut_down(cluster_id)  # releases what a finished YellowDog cluster still holds


def shut_down_left(backend_api: Backend, name: str) -> None:
    """Safety net after the leak count (quicker than another `ray down`): whatever is still listed goes."""
    for record in backend_api.list_clusters():
        if record.name == name:
            backend_api.shut_down(record.cluster_id)
