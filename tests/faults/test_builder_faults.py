"""Builder faults that need no Ray: the client killed during a build or mid-run, corrupt and stale
state, a failing worker script on YellowDog. Each case ends with the leak count (`fault_leaks`).

The heads here run `sleep` (or a stand-in that only listens), so the faults hit the builder and the
backend, not Ray; the cases with real Ray are in test_builder_mid_run.py.
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
from pathlib import Path

import pytest

from raydog_core import RayDogCluster
from raydog_core.backends.base import NodeStatus
from raydog_core.errors import NodeFailedError
from raydog_core.processes import wait_until
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator
from raydog_core.testing.leaks import count_leaks
from tests.faults.clients import (
    RAYDOG,
    SLEEPING_HEAD,
    backend_fields,
    raydog,
    signal_and_wait,
    start,
    wait_for_head,
    write_spec,
)

BACKENDS = ("local", "yellowdog")
# A head that accepts connections on the GCS port without running Ray: build() trusts it after ~10 s.
LISTENING_HEAD = '#!/bin/bash\nexec python -m http.server "$RAYDOG_GCS_PORT" --bind 127.0.0.1\n'
FAILING_WORKER = "#!/bin/bash\necho 'worker: cannot join the head' >&2\nexit 7\n"
# The builder in a with-block, as a user's program holds it: build, then "work" until killed.
WITH_BLOCK_CLIENT = """
import sys, time
from raydog_core import RayDogCluster
from raydog_core.spec import load_spec_file
with RayDogCluster(spec=load_spec_file(sys.argv[1]), on_state=lambda s: s.write(sys.argv[2])) as cluster:
    cluster.build(wait_for_head=False)
    open(sys.argv[3], "w").close()  # built: the program is "working" now
    time.sleep(600)
"""

# `raydog` with the one-minute minimum of cluster_lifetime lowered, so a lifetime test takes seconds.
SHORT_LIFETIME_RAYDOG = (
    "from datetime import timedelta; from raydog_core import cli, limits; "
    "limits.MIN_LIFETIME = timedelta(seconds=1); cli.main(prog_name='raydog')"
)


def cells(fault: str) -> list:
    return [
        pytest.param(backend, marks=pytest.mark.fault_case("builder", backend, fault), id=backend)
        for backend in BACKENDS
    ]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(2)}"


def shut_down_quietly(state_file: Path) -> None:
    """Safety net after the leak count: never leave a cluster for the next test."""
    if state_file.is_file():
        raydog("down", str(state_file))


@pytest.mark.parametrize("backend", cells("client_sigterm"))
def test_sigterm_during_build_shuts_down_what_was_created(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks
) -> None:
    """`raydog up` terminated while it waits for the head: like Ctrl+C, the build cleans up and exits."""
    spec = write_spec(tmp_path, unique("term"), backend, head_node_ray_start_script=SLEEPING_HEAD)
    state_file = tmp_path / "state.json"
    client = start([RAYDOG, "up", str(spec), "-s", str(state_file)], env)
    try:
        wait_for_head(state_file, client)
        output = signal_and_wait(client, signal.SIGTERM)
        assert client.returncode != 0, output
        assert json.loads(state_file.read_text())["phase"] == "shut_down", output
        fault_leaks.assert_none(emulator=emulator_or_none)
    finally:
        shut_down_quietly(state_file)


@pytest.mark.parametrize("backend", cells("client_sigterm"))
def test_sigterm_mid_run_ends_the_with_block_and_its_cluster(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks
) -> None:
    """A program holding the cluster in a with-block is terminated while it works: the block's
    shut-down runs before the process ends."""
    spec = write_spec(tmp_path, unique("termrun"), backend, head_node_ray_start_script=SLEEPING_HEAD)
    state_file = tmp_path / "state.json"
    working = tmp_path / "working"
    client = start([sys.executable, "-c", WITH_BLOCK_CLIENT, str(spec), str(state_file), str(working)], env)
    try:
        wait_for_head(state_file, client)
        assert wait_until(lambda: client.poll() is not None or working.exists(), 30), "build() never returned"
        output = signal_and_wait(client, signal.SIGTERM)
        assert client.returncode == -signal.SIGTERM, output  # it still dies of the signal
        assert json.loads(state_file.read_text())["phase"] == "shut_down", output
        fault_leaks.assert_none(emulator=emulator_or_none)
    finally:
        shut_down_quietly(state_file)


@pytest.mark.parametrize("backend", cells("client_sigkill"))
def test_sigkill_during_build_is_recovered_from_what_it_left(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks
) -> None:
    """`raydog up` killed outright leaves its cluster; the documented recoveries remove all of it:
    `raydog down <state file>` (the state is saved from the first resource on) locally, and
    `raydog reap --name` on YellowDog (no state file needed)."""
    name = unique("kill")
    spec = write_spec(tmp_path, name, backend, head_node_ray_start_script=SLEEPING_HEAD)
    state_file = tmp_path / "state.json"
    client = start([RAYDOG, "up", str(spec), "-s", str(state_file)], env)
    try:
        wait_for_head(state_file, client)
        signal_and_wait(client, signal.SIGKILL)
        left = count_leaks(emulator=emulator_or_none, wait_s=0)
        assert left.total > 0, "SIGKILL left nothing behind: the fault was not injected"
        if backend == "local":
            recovery = raydog("down", str(state_file), env=env)
        else:
            recovery = raydog("reap", "--backend", "yellowdog", "--name", name, env=env)
        assert recovery.returncode == 0, recovery.stderr
        fault_leaks.assert_none(emulator=emulator_or_none)
    finally:
        shut_down_quietly(state_file)


@pytest.mark.fault_case("builder", "local", "client_sigkill")
def test_sigkill_without_any_recovery_the_lifetime_stops_every_node(
    raydog_home: Path, tmp_path: Path, fault_leaks
) -> None:
    """Nobody runs a recovery command: `cluster_lifetime` (coreutils' timeout in every local node)
    stops the nodes by themselves."""
    spec = write_spec(
        tmp_path, unique("life"), "local", head_node_ray_start_script=SLEEPING_HEAD, cluster_lifetime="PT3S"
    )
    state_file = tmp_path / "state.json"
    client = start([sys.executable, "-c", SHORT_LIFETIME_RAYDOG, "up", str(spec), "-s", str(state_file)])
    try:
        wait_for_head(state_file, client)
        signal_and_wait(client, signal.SIGKILL)
        fault_leaks.assert_none(wait_s=20)
    finally:
        shut_down_quietly(state_file)


@pytest.mark.parametrize("backend", cells("corrupt_state"))
def test_corrupt_state_fails_clearly_touches_nothing_and_reap_recovers(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks
) -> None:
    """A damaged state file: `raydog down` / `status` say what is wrong with it (no traceback) and stop
    nothing; `raydog reap --name` finds the cluster without the file and removes it."""
    name = unique("corrupt")
    cluster = RayDogCluster(cluster_name=name, head_node_ray_start_script=SLEEPING_HEAD, **_fields(backend))
    try:
        cluster.build(wait_for_head=False)
        bad = tmp_path / "truncated.json"
        bad.write_text(cluster.save_state_to_json()[:40])  # as a disk full or a killed writer leaves it
        for command in ("down", "status"):
            result = raydog(command, str(bad), env=env)
            assert result.returncode == 1, (command, result.stdout, result.stderr)
            assert "not valid JSON" in result.stderr and "Traceback" not in result.stderr, result.stderr
        bad.write_text(cluster.save_state_to_json().replace('"cluster_id"', '"cluster_ident"'))
        result = raydog("down", str(bad), env=env)
        assert result.returncode == 1 and "corrupt" in result.stderr, result.stderr
        assert any(n.status == NodeStatus.RUNNING for n in cluster.nodes()), (
            "a corrupt state stopped something"
        )
        recovery = raydog("reap", "--backend", backend, "--name", name, env=env)
        assert recovery.returncode == 0 and name in recovery.stdout, recovery.stderr
        fault_leaks.assert_none(emulator=emulator_or_none)
    finally:
        cluster.shut_down()


@pytest.mark.parametrize("backend", cells("stale_state"))
def test_stale_state_is_harmless_and_clear(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks
) -> None:
    """Two kinds of stale state: a cluster that was already shut down (down again is a no-op, status
    shows every node finished) and a cluster that no longer exists (a clear error, nothing touched)."""
    cluster = RayDogCluster(
        cluster_name=unique("stale"), head_node_ray_start_script=SLEEPING_HEAD, **_fields(backend)
    )
    state_file = tmp_path / "state.json"
    try:
        cluster.build(wait_for_head=False)
        cluster.save_state_to_json_file(state_file)
        old = tmp_path / "old.json"
        old.write_text(state_file.read_text())  # saved while running: stale once the cluster is down
        assert raydog("down", str(state_file), env=env).returncode == 0
        again = raydog("down", str(old), env=env)
        assert again.returncode == 0, again.stderr
        status = raydog("status", str(old), env=env)
        assert status.returncode == 0 and "running" not in status.stdout.split("\n", 1)[1], status.stdout
        gone = json.loads(old.read_text())
        gone["cluster_id"] = _missing_cluster_id(backend)
        missing = tmp_path / "missing.json"
        missing.write_text(json.dumps(gone))
        result = raydog("down", str(missing), env=env)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert gone["cluster_id"] in result.stderr, result.stderr
        fault_leaks.assert_none(emulator=emulator_or_none)
    finally:
        cluster.shut_down()


def _missing_cluster_id(backend: str) -> str:
    if backend == "local":
        return "stale-0000"
    return "ydid:workreq:000000:00000000-0000-0000-0000-000000000000"


@pytest.mark.fault_case("builder", "yellowdog", "worker_script_fails")
def test_failing_worker_script_fails_the_build_with_its_exit_code(
    raydog_home: Path, yellowdog_emulator: Emulator, fault_leaks
) -> None:
    cluster = RayDogCluster(
        cluster_name=unique("badworker"),
        head_node_ray_start_script=LISTENING_HEAD,
        **_fields("yellowdog", yellowdog_emulator),
    )
    cluster.add_worker_pool(
        worker_pool_node_count=1,
        worker_node_task_script=FAILING_WORKER,
        worker_node_compute_requirement_template_id=DEFAULT_TEMPLATES[0],
    )
    with pytest.raises(NodeFailedError, match=r"worker node .* code 7"):
        cluster.build(60)
    fault_leaks.assert_none(emulator=yellowdog_emulator)


def _fields(backend: str, emulator: Emulator | None = None) -> dict:
    """RayDogCluster keyword arguments; YellowDog credentials from YD_API_* (set by `env`) unless given."""
    fields = backend_fields(backend)
    if emulator is not None:
        fields.update(emulator.cluster_kwargs())
    return fields
