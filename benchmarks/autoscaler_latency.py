"""Autoscaling latency: RayDog's provider (`ray up`, local backend) against Ray's own fake multi-node
provider, side by side in one run, with the same node types and `AUTOSCALER_UPDATE_INTERVAL_S=1`.

Measured by one driver script against each cluster: a task needing 2 CPUs (the head has 1) to the
moment a new worker is alive in Ray; the time until idle workers are gone (idle_timeout 0.25 min);
and `request_resources(num_cpus=2)` to a worker alive. Ray's fake provider runs its workers inside
the head's monitor process (no `ray start`), so it is the lower bound a real provider is held to.
To show where the difference goes, the run also times a plain `ray start --address=... --block`
joining the fake provider's head by hand: the cost of a real node process, with no autoscaler at all.
Ray's head is started by hand for the fake provider (as in ray-autoscaler.md, Experiment B): never
`AutoscalingCluster`, whose `ray stop --force` kills every Ray process on the machine.

    python -m benchmarks.autoscaler_latency
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.local_ray_up import RAY, base_env, local_ray_up
from raydog_core import processes
from raydog_core.local_node_args import local_node_args
from raydog_core.ports import free_ports, is_listening
from raydog_core.ray_nodes import alive_ray_nodes

IDLE_TIMEOUT_MINUTES = 0.25

DRIVER = r"""
import json, sys, time
import ray
from ray.autoscaler.sdk import request_resources

ray.init(address=sys.argv[1])

def alive():
    return sum(1 for n in ray.nodes() if n["Alive"])

def wait(predicate, timeout=180):
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.1)
    return round(time.monotonic() - started, 2)

@ray.remote(num_cpus=2)
def work():
    time.sleep(1)
    return 1

result = {}
base = alive()
started = time.monotonic()
ref = work.remote()
result["demand_to_worker_alive_s"] = wait(lambda: alive() > base)
ray.get(ref)
result["demand_to_task_done_s"] = round(time.monotonic() - started, 2)
result["idle_scale_down_s"] = wait(lambda: alive() == base, timeout=240)
started = time.monotonic()
request_resources(num_cpus=2)
result["request_resources_to_worker_alive_s"] = wait(lambda: alive() > base)
request_resources(num_cpus=0)
print("RESULT " + json.dumps(result))
"""


def _driver(address: str, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, address],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise RuntimeError(f"driver failed: {out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def measure_raydog(directory: Path) -> dict[str, Any]:
    with local_ray_up(directory, "lat", IDLE_TIMEOUT_MINUTES, max_workers=2) as cluster:
        return _driver(cluster.gcs_address, cluster.env)


def _fake_config(gcs_address: str) -> dict[str, Any]:
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    return {
        "cluster_name": "fake_multinode",
        "max_workers": 2,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "provider": {
            # `external` rather than `fake_multinode`: the wheel lacks the latter's defaults file
            # (fake_multi_node/example.yaml), and external providers need none.
            "type": "external",
            "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "launch_multiple": True,
            "head_node_id": FAKE_HEAD_NODE_ID,
            "gcs_address": gcs_address,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 1}, "node_config": {}, "max_workers": 0},
            "ray.worker.cpu": {
                "resources": {"CPU": 2, "object_store_memory": 134217728},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 2,
            },
        },
        "head_node_type": "ray.head.default",
        "auth": {},
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def measure_fake_multinode(directory: Path) -> dict[str, Any]:
    from ray.autoscaler._private.fake_multi_node.node_provider import FAKE_HEAD_NODE_ID

    gcs, dashboard, client = free_ports(3)
    path = directory / "fake.yaml"
    path.write_text(yaml.safe_dump(_fake_config(f"127.0.0.1:{gcs}")))
    temp_dir = Path("/tmp") / f"rd-fake-{secrets.token_hex(3)}"
    env = dict(
        base_env(),
        RAY_FAKE_CLUSTER="1",
        RAY_enable_autoscaler_v2="1",
        RAY_CLOUD_INSTANCE_ID=FAKE_HEAD_NODE_ID,
        RAY_OVERRIDE_NODE_ID_FOR_TESTING=FAKE_HEAD_NODE_ID,
        HOME=str(directory),
    )
    argv = [
        RAY, "start", "--head", f"--port={gcs}", f"--autoscaling-config={path}", "--num-cpus=1",
        f"--temp-dir={temp_dir}", f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
        "--dashboard-agent-listen-port=0", "--object-store-memory=134217728", "--memory=1073741824",
        "--node-ip-address=127.0.0.1", "--disable-usage-stats", "--block",
    ]  # fmt: skip
    proc, ref = processes.start_session(argv, env, str(directory), str(directory / "fake-head.log"))
    try:
        if not processes.wait_until(lambda: proc.poll() is not None or is_listening("127.0.0.1", gcs), 120):
            raise RuntimeError("fake multinode head did not start")
        result = _driver(f"127.0.0.1:{gcs}", base_env())
        result["plain_ray_start_join_s"] = _plain_join(directory, gcs, f"http://127.0.0.1:{dashboard}")
        return result
    finally:
        processes.stop_sessions([ref], grace_s=2.0)
        proc.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _plain_join(directory: Path, gcs: int, dashboard_url: str) -> float | None:
    """Seconds from launching a plain `ray start` worker process to its raylet alive in Ray."""
    base = len(alive_ray_nodes(dashboard_url, None))
    temp_dir = Path("/tmp") / f"rd-join-{secrets.token_hex(3)}"
    temp_dir.mkdir()
    argv = [RAY, "start", f"--address=127.0.0.1:{gcs}", "--num-cpus=1", *local_node_args(temp_dir), "--block"]
    started = time.monotonic()
    proc, ref = processes.start_session(argv, base_env(), str(directory), str(directory / "join.log"))
    try:
        joined = processes.wait_until(lambda: len(alive_ray_nodes(dashboard_url, None)) > base, 120, 0.1)
        return round(time.monotonic() - started, 2) if joined else None
    finally:
        processes.stop_sessions([ref], grace_s=2.0)
        proc.wait(timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def run() -> dict[str, Any]:
    directory = Path(tempfile.mkdtemp(prefix="rd-bench-latency-"))
    try:
        raydog = measure_raydog(directory)
        fake = measure_fake_multinode(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    ratios = {
        key: round(raydog[key] / fake[key], 2)
        for key in raydog
        if isinstance(raydog.get(key), (int, float)) and isinstance(fake.get(key), (int, float)) and fake[key]
    }
    return {"raydog_local": raydog, "ray_fake_multinode": fake, "ratio_raydog_over_fake": ratios}


if __name__ == "__main__":
    results = run()
    keys = list(results["raydog_local"])
    print(f"{'measurement':<38} {'RayDog':>8} {'fake':>8} {'ratio':>6}")
    for key in keys:
        print(
            f"{key:<38} {results['raydog_local'][key]!s:>8} {results['ray_fake_multinode'].get(key)!s:>8} "
            f"{results['ratio_raydog_over_fake'].get(key, '-')!s:>6}"
        )
