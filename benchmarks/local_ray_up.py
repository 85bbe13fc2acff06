"""`ray up` of examples/autoscaler/local.yaml sized for a benchmark, with `ray down` always at the end:
shared by the autoscaling benchmarks so they measure the same cluster."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from raydog_core.backends.local.backend import LocalBackend
from raydog_core.home import raydog_home
from raydog_core.tagstore import TagStore

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")
WORKER_TYPE = "ray_worker_small"


def base_env() -> dict[str, str]:
    """This environment without inherited RAY_* settings, auth off, the autoscaler's round at 1 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0", AUTOSCALER_UPDATE_INTERVAL_S="1")
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclass
class UpCluster:
    name: str
    cluster_id: str
    gcs_address: str
    env: dict[str, str]
    down_ok: bool = False


@contextmanager
def local_ray_up(
    directory: Path, prefix: str, idle_timeout_minutes: float, max_workers: int
) -> Iterator[UpCluster]:
    config = yaml.safe_load((REPO / "examples" / "autoscaler" / "local.yaml").read_text())
    name = f"{prefix}-{secrets.token_hex(3)}"
    config["cluster_name"] = name
    config["idle_timeout_minutes"] = idle_timeout_minutes
    config["max_workers"] = max_workers
    config["provider"].update(ray_auth_mode="disabled", autoscaler_update_interval_s=1)
    config["available_node_types"][WORKER_TYPE]["max_workers"] = max_workers
    path = directory / f"{prefix}.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(base_env(), RAY_UP_enable_autoscaler_v2="1")

    def ray(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=600, check=False)

    up = ray("up", "-y", "--no-config-cache", str(path))
    cluster: UpCluster | None = None
    try:
        if up.returncode != 0:
            raise RuntimeError(f"ray up failed: {up.stdout[-2000:]}\n{up.stderr[-2000:]}")
        cluster = UpCluster(name, *_gcs_address(name), env=env)
        yield cluster
    finally:
        down = ray("down", "-y", str(path))
        if cluster is not None:
            cluster.down_ok = down.returncode == 0


def _gcs_address(name: str) -> tuple[str, str]:
    (record,) = [r for r in LocalBackend().list_clusters() if r.name == name and r.state == "running"]
    store = TagStore.on_head(
        record.name,
        int(record.labels["raydog-tag-store-port"]),
        raydog_home() / "autoscaler" / record.cluster_id / "tag-store.password",
    )
    try:
        return record.cluster_id, f"127.0.0.1:{store.get_meta()['gcs_port']}"
    finally:
        store.close()
