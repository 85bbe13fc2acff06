"""The lease column of the fault matrix: a client holding a lease is killed with SIGKILL, nobody runs
any recovery, and nothing of its cluster is alive within `lease_timeout` + 60 s — its head's watchdog
ends the head, the workers leave, and on YellowDog the pools' idle shutdown releases the instances.

Real Ray with RayDog's default scripts: the watchdog and the workers' head watch are what is tested.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from raydog_core import RayDogCluster, postmortem
from raydog_core.backends.yellowdog.placement import node_files_root
from raydog_core.processes import wait_until
from raydog_core.testing.leaks import count_leaks
from tests.faults.clients import raydog, signal_and_wait, start, write_spec

BACKENDS = ("local", "yellowdog")
LEASE_TIMEOUT_S = 5
# Idle YellowDog nodes and pools go after 30 s by default; the emulated ones here after 5 s, so a case
# measures the lease and the watchdog, not the platform's idle timer.
QUICK_IDLE_SHUTDOWN = {"RAYDOG_YELLOWDOG_IDLE_SHUTDOWN_S": "5"}
# The builder in a with-block, leased by default, as a user's program holds it: build, then "work".
LEASED_CLIENT = """
import sys, time
from raydog_core import RayDogCluster
from raydog_core.spec import load_spec_file
with RayDogCluster(spec=load_spec_file(sys.argv[1]), on_state=lambda s: s.write(sys.argv[2])) as cluster:
    cluster.build()
    open(sys.argv[3], "w").close()  # built: the program is "working" now
    time.sleep(600)
"""


def cells(fault: str) -> list:
    return [
        pytest.param(backend, marks=pytest.mark.fault_case("builder", backend, fault), id=backend)
        for backend in BACKENDS
    ]


@pytest.mark.slow
@pytest.mark.parametrize("backend", cells("lease_lapses"))
def test_a_sigkilled_with_block_leaves_nothing_once_its_lease_lapses(
    backend: str, env: dict, emulator_or_none, raydog_home: Path, tmp_path: Path, fault_leaks
) -> None:
    spec = write_spec(
        tmp_path,
        f"lease-{backend[:5]}",
        backend,
        lease_timeout=f"PT{LEASE_TIMEOUT_S}S",
        # A worker locally, where its head watch and clean exit are under test; on YellowDog the head alone
        # shows tasks, instances and pools going (the worker scripts are the same on both).
        worker_pools=[{"worker_pool_node_count": 1}] if backend == "local" else [],
    )
    state_file, built = tmp_path / "state.json", tmp_path / "built"
    client = start(
        [sys.executable, "-c", LEASED_CLIENT, str(spec), str(state_file), str(built)],
        {**env, **QUICK_IDLE_SHUTDOWN},
    )
    try:
        assert wait_until(lambda: client.poll() is not None or built.exists(), 180, 0.5), (
            "build() never returned"
        )
        assert client.poll() is None, client.communicate()[0]
        state = json.loads(state_file.read_text())
        assert state["lease"]["timeout_s"] == LEASE_TIMEOUT_S
        holders = [lease["holder"] for lease in RayDogCluster.from_state(state).lease_view()["leases"]]
        assert len(holders) == 1 and holders[0].startswith("builder:"), holders

        signal_and_wait(client, signal.SIGKILL)
        assert count_leaks(emulator=emulator_or_none, wait_s=0).total > 0, "the cluster died with its client"

        waited = fault_leaks.wait_until_nothing_runs(
            emulator=emulator_or_none, timeout_s=LEASE_TIMEOUT_S + 60
        )
        # A figure, not a check: how long after the kill the last of the cluster was gone.
        print(f"{backend}: nothing alive {waited:.0f} s after SIGKILL (lease {LEASE_TIMEOUT_S} s)")
        # It is over everywhere: `raydog list` shows it ended and removes what this machine kept of it
        # (its token), so the leak count, files included, is zero with no reaper and no shut-down.
        listing = raydog("list", "--all", "--backend", backend, env=env)
        assert listing.returncode == 0, listing.stderr
        if backend == "local":
            assert "ended" in listing.stdout, listing.stdout
        else:  # nodes that shared this host left their files; the listing removed them too
            assert not node_files_root(state["cluster_id"]).exists()
        fault_leaks.assert_none(emulator=emulator_or_none, wait_s=0)
        # Its post-mortem, written by that listing, says so.
        bundle = postmortem.find(state["cluster_id"])
        assert bundle is not None and "ended by itself" in bundle.summary, bundle
        head_log = next(Path(state["log_dir"]).glob("*head*.log")) if state.get("log_dir") else None
        if head_log is not None:
            assert "no lease held" in head_log.read_text(), "the cluster did not end by its watchdog"
    finally:
        if client.poll() is None:
            client.kill()
        if state_file.is_file():
            raydog("down", str(state_file), env=env)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [pytest.param(b, marks=pytest.mark.fault_case("ray_up", b, "lease_lapses"), id=b) for b in BACKENDS],
)
def test_an_idle_ray_up_cluster_ends_itself_after_its_idle_ttl(
    backend: str, env: dict, emulator_or_none, tmp_path: Path, fault_leaks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ray up` with `idle_ttl_minutes`, and the `ray` client gone (nothing of it runs after `ray up`
    returns): with no Ray driver and no job, the head's watchdog ends the whole cluster by itself, and
    a later `ray down` has nothing left to do."""
    from tests.autoscaler.autoscaler_cli import ray_cli
    from tests.faults.clients import ray_up_config

    idle_ttl_s = 6
    for key, value in QUICK_IDLE_SHUTDOWN.items():
        monkeypatch.setenv(key, value)  # for the `ray` CLI, the provider's process
    config = ray_up_config(
        tmp_path, f"idle-{backend[:5]}", backend, **{"provider.idle_ttl_minutes": idle_ttl_s / 60}
    )
    ray_cli("up", "-y", "--no-config-cache", str(config), timeout=400)
    assert count_leaks(emulator=emulator_or_none, wait_s=0).total > 0, "`ray up` left no cluster"

    try:
        fault_leaks.wait_until_nothing_runs(emulator=emulator_or_none, timeout_s=idle_ttl_s + 60)
        raydog("list", "--all", "--backend", backend, env=env)  # tidies what this machine kept of it
        fault_leaks.assert_none(emulator=emulator_or_none, wait_s=0)
    finally:
        ray_cli("down", "-y", str(config), check=False)
