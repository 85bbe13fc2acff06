"""Warm reuse on real Ray: runs with one reuse_key and one spec share a cluster, which ends by itself
once idle for its idle_ttl after the last run left; a different spec gets its own cluster; parallel runs
build one; a dead warm cluster is replaced, never attached to."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import ray
from click.testing import CliRunner

from raydog_core import RayDogCluster, cli, leases, naming, reuse, warm_files
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.errors import SpecError
from raydog_core.ports import free_ports
from raydog_core.processes import wait_until
from raydog_core.reaper import list_and_tidy
from raydog_core.spec import ClusterSpec, build_model
from raydog_core.testing.leaks import count_leaks

IDLE_TTL_S = 6


def warm_spec(name: str = "warm", **fields) -> ClusterSpec:
    defaults = {
        "reuse_key": "nightly",
        "idle_ttl": timedelta(seconds=IDLE_TTL_S),
        "lease_timeout": timedelta(seconds=5),
        "worker_preload_modules": [PRELOADED],
    }
    return ClusterSpec(cluster_name=name, **{**defaults, **fields})


@dataclass(frozen=True)
class Worker:
    """The Ray worker process a task ran in."""

    started_at: float  # the process's start, in seconds since boot (precise, unlike its epoch time)
    preloaded: bool  # whether PRELOADED was imported before the task ran


PRELOADED = "colorsys"  # a module no Ray worker imports by itself


def one_task(cluster: RayDogCluster) -> Worker:
    def where() -> tuple[float, bool]:  # plain values: the worker cannot import this test module
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return ticks / os.sysconf("SC_CLK_TCK"), PRELOADED in sys.modules

    ray.init(address=cluster.ray_address, namespace="warm-test", log_to_driver=False)
    try:
        return Worker(*ray.get(ray.remote(where).remote()))
    finally:
        ray.shutdown()


def raydog_list() -> dict[str, str]:
    """`raydog list`'s lines by their first word (lease holder lines under "  ")."""
    listing = CliRunner().invoke(cli.main, ["list"], catch_exceptions=False).output
    lines: dict[str, str] = {}
    for line in listing.splitlines():
        key = "  " if line.startswith("  ") else line.split()[0]
        lines[key] = lines.get(key, "") + line
    return lines


def running(backend: LocalBackend, cluster_id: str) -> bool:
    return any(r.cluster_id == cluster_id and r.state == "running" for r in backend.list_clusters())


def wait_until_gone(backend: LocalBackend, cluster_id: str, timeout_s: float) -> float:
    started = time.monotonic()
    while running(backend, cluster_id) and time.monotonic() - started < timeout_s:
        time.sleep(0.5)
    return time.monotonic() - started


@pytest.mark.slow
def test_runs_with_one_key_share_a_cluster_that_ends_once_idle(local_backend, raydog_home: Path) -> None:
    with RayDogCluster(spec=warm_spec()) as first:
        first.build()
        warm_id = first.cluster_id
        assert first.spec.cluster_name.startswith("warm-r") and first.is_warm
        assert one_task(first).preloaded
    assert running(local_backend, warm_id), "the warm cluster went with its first run"
    # `raydog list`: no lease held; "busy" until the watchdog's next look sees the driver gone, then idle.
    assert re.search(r" (busy|idle \S+ of 6s) ", raydog_list()[first.spec.cluster_name])
    left = RayDogCluster.from_state(first.state).lease_view()
    assert left["leases"] == [] and left["idle_ttl_s"] == IDLE_TTL_S, left

    started = time.monotonic()
    with RayDogCluster(spec=warm_spec()) as second:
        second.build()
        attach_s = time.monotonic() - started
        assert second.cluster_id == warm_id
        holders = [lease["holder"] for lease in second.lease_view()["leases"]]
        assert len(holders) == 1 and holders[0].startswith("builder:"), holders
        assert one_task(second).preloaded
        listed = raydog_list()
        assert (
            "1 held" in listed[second.spec.cluster_name] and f"lease {holders[0]} expires in" in listed["  "]
        )

        with RayDogCluster(spec=warm_spec(head_node_resources={"num_cpus": 2})) as other:
            other.build()  # another spec: another cluster, while the warm one lives on for its holder
            assert other.cluster_id != warm_id and other.spec.cluster_name != second.spec.cluster_name
            other.shut_down()  # ends it for everyone, now
        assert running(local_backend, warm_id)
    print(f"attached to the warm cluster in {attach_s:.2f} s")

    # Ray's own first ready workers are used up by now: this run's task starts at once on a worker the
    # head started for it as the run before left (raydog_core/prestart.py), its modules imported.
    (head_log,) = (raydog_home / "local" / warm_id / "logs").glob("*-head-n1.log")
    assert wait_until(lambda: head_log.read_text().count("started 1 ready Ray worker") == 2, 30, 0.2)
    third_began_at = time.clock_gettime(time.CLOCK_BOOTTIME)
    with RayDogCluster(spec=warm_spec()) as third:
        third.build()
        worker = one_task(third)
    assert worker.preloaded and worker.started_at < third_began_at, (worker, third_began_at)

    waited = wait_until_gone(local_backend, warm_id, IDLE_TTL_S + 60)
    assert not running(local_backend, warm_id), "the warm cluster did not end once idle"
    print(f"the warm cluster ended {waited:.1f} s after its last run left (idle_ttl {IDLE_TTL_S} s)")
    key = reuse.WarmKey.of(warm_spec(), [], None)
    assert reuse.warm_state(key, local_backend) is None, "an ended warm cluster is offered to the next run"
    assert warm_files.saved_state(first.spec.cluster_name) is None
    listed = {r.cluster_id: r.state for r in list_and_tidy(local_backend)}  # what `raydog list` does
    assert listed[warm_id] == "stopped"  # ended by itself, then finished off by the next run's look
    assert count_leaks(raydog_home, wait_s=30).total == 0


PARALLEL_RUN = """
import sys
from datetime import timedelta
from raydog_core import RayDogCluster
from raydog_core.spec import ClusterSpec, build_model
spec = ClusterSpec(cluster_name="para", reuse_key="k", idle_ttl=timedelta(seconds=60))
with RayDogCluster(spec=spec) as cluster:
    cluster.build()
    print("cluster", cluster.cluster_id, flush=True)
"""


@pytest.mark.slow
def test_parallel_runs_with_one_key_build_one_cluster(
    local_backend, raydog_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", PARALLEL_RUN], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(3)  # three, not more: each imports Ray at once on a 2-core machine
    ]
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    assert all(run.returncode == 0 for run in runs), outputs
    ids = {line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("cluster ")}
    assert len(ids) == 1, outputs
    warm = [r for r in local_backend.list_clusters() if r.state == "running"]
    assert [r.cluster_id for r in warm] == list(ids)
    (warm_id,) = ids

    # Its saved state no longer matches what the backend knows (here: a lease port nobody listens on):
    # the cluster is never attached to, but shut down and replaced.
    spec = ClusterSpec(cluster_name="para", reuse_key="k", idle_ttl=timedelta(seconds=60))
    state = warm_files.saved_state(reuse.WarmKey.of(spec, [], None).cluster_name)
    assert state is not None and state.cluster_id == warm_id
    head = state.head.model_copy(update={"lease_port": free_ports(1)[0]})
    warm_files.remember(state.model_copy(update={"head": head}))
    replacement = RayDogCluster(spec=spec)
    with caplog.at_level("WARNING", logger="raydog"):
        replacement.build()
    try:
        assert not replacement.attached and replacement.cluster_id != warm_id
        # The warning tells a dead head from a live one whose state does not match: here it still runs.
        (why,) = [r.message for r in caplog.records if "is not usable" in r.message]
        assert re.search(r"\(head \S+ running\); replacing it", why), why
        assert not [r for r in local_backend.live_resources() if warm_id in r], "the dead one was left"
    finally:
        replacement.shut_down()
    assert count_leaks(raydog_home, wait_s=30).total == 0


def test_a_warm_cluster_is_always_leased(raydog_home: Path) -> None:
    cluster = RayDogCluster(spec=warm_spec())
    with pytest.raises(SpecError, match="reuse_key"):
        cluster.build(lease=False)


def test_the_match_is_the_spec_but_not_who_runs_it() -> None:
    base = reuse.WarmKey.of(warm_spec(), [], None)
    assert base == reuse.WarmKey.of(warm_spec(cluster_labels={"run": "2"}), [], None)
    assert base == reuse.WarmKey.of(warm_spec(build_timeout=timedelta(minutes=1)), [], None)
    assert base != reuse.WarmKey.of(warm_spec(idle_ttl=timedelta(minutes=1)), [], None)
    assert base != reuse.WarmKey.of(warm_spec(head_node_resources={"num_cpus": 2}), [], None)
    assert base != reuse.WarmKey.of(warm_spec(), [], "https://api.yellowdog.ai")
    assert base != reuse.WarmKey.of(warm_spec(head_node_ray_start_script="#!/bin/bash\nexit 1\n"), [], None)
    other_key = reuse.WarmKey.of(warm_spec(reuse_key="other"), [], None)
    assert other_key.digest != base.digest and other_key.cluster_name != base.cluster_name
    long_name = reuse.WarmKey.of(warm_spec("w" * naming.MAX_CLUSTER_NAME_LENGTH), [], None).cluster_name
    assert len(long_name) == naming.MAX_CLUSTER_NAME_LENGTH and re.fullmatch(r"w+-r[0-9a-f]{8}", long_name)


def test_a_bad_reuse_key_is_refused_before_anything_exists() -> None:
    with pytest.raises(SpecError, match="reuse_key"):
        build_model(ClusterSpec, {"cluster_name": "w", "reuse_key": "Not A Key"})


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"worker_preload_modules": ["pandas; rm -rf /"]}, r"worker_preload_modules\[0\]"),
        ({"worker_preload_modules": ["ok", "bad name"]}, r"worker_preload_modules\[1\]"),
        ({"worker_preload_modules": [f"m{i}" for i in range(33)]}, "worker_preload_modules"),
        ({"warm_workers": -1}, "warm_workers"),
        ({"warm_workers": 17}, "warm_workers"),
        ({"warm_workers": True}, "warm_workers"),
    ],
)
def test_bad_ready_worker_settings_are_refused_naming_the_field(fields: dict, named: str) -> None:
    with pytest.raises(SpecError, match=named):
        build_model(ClusterSpec, {"cluster_name": "w", "reuse_key": "k", **fields})


def test_ready_workers_go_to_warm_clusters_and_preloads_to_every_ray_node() -> None:
    """Only a cluster with a reuse_key starts workers for a next run; the head's watchdog gets the
    prestart program then, and every Ray node gets the modules to preload."""
    assert leases.terms_for(warm_spec(), leased=True).warm_workers == 1
    assert leases.terms_for(warm_spec(warm_workers=3), leased=True).warm_workers == 3
    assert leases.terms_for(ClusterSpec(cluster_name="cold", warm_workers=3), leased=True).warm_workers == 0
    warm_env = leases.watchdog_environment(leases.terms_for(warm_spec(), leased=True), 1, 2)
    assert warm_env["RAYDOG_WARM_WORKERS"] == "1" and "PrestartWorkers" in warm_env["RAYDOG_PRESTART_PROGRAM"]
    cold_env = leases.watchdog_environment(leases.terms_for(warm_spec(warm_workers=0), leased=True), 1, 2)
    assert "RAYDOG_PRESTART_PROGRAM" not in cold_env and "RAYDOG_WARM_WORKERS" not in cold_env
