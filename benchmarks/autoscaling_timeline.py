"""An autoscaling timeline from a real run, as a picture: demand, nodes requested, joined and removed.

A real `ray up` of examples/autoscaler/local.yaml (local backend, a unique cluster name, idle timeout
15 s, `AUTOSCALER_UPDATE_INTERVAL_S=1`) and a driver that makes demand in waves: 6 tasks of 2 CPUs
(the head has 1), an idle gap until every worker is gone, 3 more tasks, then `request_resources(4
CPUs)` held for a while and released. Every 0.5 s a sampler records:

* demand: CPUs of pending task/actor demand and of `request_resources` constraints, from the
  autoscaler's cluster status in the GCS (what `ray status` shows);
* requested: worker nodes the provider has launched (alive in the backend) that have not joined Ray yet
  (a node leaving Ray while the backend stops it is no longer "requested");
* joined: worker nodes alive in Ray (matched to the provider's nodes by cloud instance id);
* removed: worker nodes the backend no longer runs, cumulative, split into those that had joined Ray
  (idle scale-down) and those that never did (their `ray start` failed: on a busy machine Ray's own
  start-up timeout hits, and the autoscaler launches replacements).

The samples go to benchmarks/results/autoscaling_timeline.json and the plot (matplotlib, the `bench`
extra) to docs/images/autoscaling-timeline.png. `ray down` always runs at the end.

    python -m benchmarks.autoscaling_timeline
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.local_ray_up import REPO, local_ray_up
from raydog_core.backends.base import NodeRole
from raydog_core.backends.local.backend import LocalBackend

RESULTS = REPO / "benchmarks" / "results" / "autoscaling_timeline.json"
IMAGE = REPO / "docs" / "images" / "autoscaling-timeline.png"
SAMPLE_S = 0.5
IDLE_TIMEOUT_MINUTES = 0.25
MAX_WORKERS = 3
HEAD_TYPE = "ray_head_default"

DRIVER = r"""
import json, sys, time
import ray
from ray.autoscaler.sdk import request_resources

ray.init(address=sys.argv[1])

def event(label):
    print("EVENT " + json.dumps({"t": time.time(), "label": label}), flush=True)

def workers():
    return sum(1 for n in ray.nodes() if n["Alive"]) - 1

def wait(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.2)

@ray.remote(num_cpus=2)
def work(seconds):
    time.sleep(seconds)

event("wave 1: 6 tasks of 2 CPUs")
ray.get([work.remote(6) for _ in range(6)])
event("wave 1 done")
wait(lambda: workers() == 0, 180)
time.sleep(4)
event("wave 2: 3 tasks of 2 CPUs")
ray.get([work.remote(6) for _ in range(3)])
event("wave 2 done")
wait(lambda: workers() == 0, 180)
time.sleep(4)
event("request_resources(4 CPUs)")
request_resources(num_cpus=4)
wait(lambda: workers() >= 2, 180)
time.sleep(8)
request_resources(num_cpus=0)
event("request_resources(0)")
wait(lambda: workers() == 0, 180)
time.sleep(3)
event("end")
"""


class Sampler:
    """Samples the cluster every SAMPLE_S seconds in a thread until stopped."""

    def __init__(self, cluster_id: str, gcs_address: str) -> None:
        self.cluster_id = cluster_id
        self.gcs_address = gcs_address
        self.samples: list[dict[str, Any]] = []
        self.errors = 0
        self._backend = LocalBackend()
        self._seen: set[str] = set()
        self._ever_joined: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="timeline-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            try:
                self.samples.append(self._sample())
            except Exception:  # noqa: BLE001 - a missed sample (GCS busy) is a gap, not a failure
                self.errors += 1

    def _sample(self) -> dict[str, Any]:
        from ray.autoscaler.v2.sdk import get_cluster_status

        now = time.time()
        status = get_cluster_status(self.gcs_address)
        demands = status.resource_demands
        joined = {
            node.instance_id
            for node in [*status.active_nodes, *status.idle_nodes]
            if node.ray_node_type_name != HEAD_TYPE
        }
        live = {
            node.node_id
            for node in self._backend.list_nodes(self.cluster_id)
            if node.role == NodeRole.WORKER and not node.status.is_final
        }
        self._seen |= live
        self._ever_joined |= joined
        gone = self._seen - live
        return {
            "t": now,
            "demand_cpus": _cpus(demands.ray_task_actor_demand),
            "constraint_cpus": _cpus(demands.cluster_constraint_demand),
            "pending_launches": sum(launch.count for launch in status.pending_launches),
            "requested": len(live - self._ever_joined),
            "joined": len(joined),
            "removed": len(gone & self._ever_joined),
            "failed_to_start": len(gone - self._ever_joined),
        }


def _cpus(demands: list[Any]) -> float:
    return sum(b.bundle.get("CPU", 0.0) * b.count for d in demands for b in d.bundles_by_count)


def record_run(directory: Path) -> dict[str, Any]:
    """`ray up`, the driver's waves with the sampler running, `ray down`; the raw timeline."""
    with local_ray_up(directory, "timeline", IDLE_TIMEOUT_MINUTES, MAX_WORKERS) as cluster:
        sampler = Sampler(cluster.cluster_id, cluster.gcs_address)
        with mock.patch.dict(os.environ, {"RAY_AUTH_MODE": "disabled"}):
            sampler.start()
            try:
                driver = subprocess.run(
                    [sys.executable, "-c", DRIVER, cluster.gcs_address],
                    env=cluster.env,
                    capture_output=True,
                    text=True,
                    timeout=900,
                    check=False,
                )
            finally:
                sampler.stop()
        if driver.returncode != 0:
            raise RuntimeError(f"driver failed: {driver.stdout[-2000:]}\n{driver.stderr[-2000:]}")
        events = [json.loads(line[6:]) for line in driver.stdout.splitlines() if line.startswith("EVENT ")]
    leaks = LocalBackend().live_resources()
    start = events[0]["t"]
    return {
        "cluster": cluster.name,
        "idle_timeout_minutes": IDLE_TIMEOUT_MINUTES,
        "autoscaler_update_interval_s": 1,
        "sample_s": SAMPLE_S,
        "missed_samples": sampler.errors,
        "ray_down_ok": cluster.down_ok,
        "leaks_after_down": leaks,
        "events": [{"t_s": round(e["t"] - start, 2), "label": e["label"]} for e in events],
        "samples": [{**s, "t": round(s["t"] - start, 2)} for s in sampler.samples if s["t"] >= start - 2],
    }


def summarise(timeline: dict[str, Any]) -> dict[str, Any]:
    samples, events = timeline["samples"], {e["label"]: e["t_s"] for e in timeline["events"]}

    def first(predicate: Any, after: float) -> float | None:
        return next((s["t"] for s in samples if s["t"] >= after and predicate(s)), None)

    wave_1 = events["wave 1: 6 tasks of 2 CPUs"]
    joined_at = first(lambda s: s["joined"] > 0, wave_1)
    idle_after = first(lambda s: s["joined"] == 0 and s["requested"] == 0, events["wave 1 done"])
    return {
        "peak_joined": max((s["joined"] for s in samples), default=0),
        "workers_removed": max((s["removed"] for s in samples), default=0),
        "workers_failed_to_start": max((s["failed_to_start"] for s in samples), default=0),
        "wave_1_demand_to_first_worker_joined_s": round(joined_at - wave_1, 2) if joined_at else None,
        "wave_1_done_to_all_workers_removed_s": round(idle_after - events["wave 1 done"], 2)
        if idle_after
        else None,
        "samples": len(samples),
        "missed_samples": timeline["missed_samples"],
        "leaks_after_down": timeline["leaks_after_down"],
    }


def plot(timeline: dict[str, Any], image: Path) -> None:
    """Two panels sharing time: demand (CPUs) above, worker nodes below; driver events marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = timeline["samples"]
    t = [s["t"] for s in samples]
    fig, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(12.5, 6.5), gridspec_kw={"height_ratios": [1, 1.6]}, dpi=110
    )
    top.step(t, [s["demand_cpus"] for s in samples], where="post", color="tab:red", label="pending tasks")
    top.fill_between(t, [s["demand_cpus"] for s in samples], step="post", color="tab:red", alpha=0.15)
    top.step(
        t,
        [s["constraint_cpus"] for s in samples],
        where="post",
        color="tab:purple",
        linestyle="--",
        label="request_resources",
    )
    top.set_ylabel("unmet demand\n(CPUs)")
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    series = [
        ("joined", "joined Ray (alive workers)", "tab:green", "-", 2.2),
        ("requested", "requested (launched, not yet in Ray)", "tab:orange", "-", 1.8),
        ("removed", "removed after joining (cumulative)", "tab:gray", ":", 1.8),
        ("failed_to_start", "failed to start, replaced (cumulative)", "tab:red", ":", 1.4),
    ]
    for key, label, color, style, width in series:
        bottom.step(
            t,
            [s[key] for s in samples],
            where="post",
            color=color,
            linestyle=style,
            linewidth=width,
            label=label,
        )
    bottom.set_ylabel("worker nodes")
    bottom.set_xlabel("seconds since the first wave of demand")
    bottom.yaxis.get_major_locator().set_params(integer=True)
    bottom.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=9)
    for axis in (top, bottom):
        axis.grid(axis="y", alpha=0.3)
        axis.spines[["top", "right"]].set_visible(False)
        for event in timeline["events"]:
            axis.axvline(event["t_s"], color="black", alpha=0.25, linewidth=0.8)
    labelled = [e for e in timeline["events"] if e["label"] != "end"]
    for index, event in enumerate(labelled):
        top.annotate(
            event["label"],
            (event["t_s"], 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, 4 + 12 * (index % 3)),  # three heights: labels of close events do not overlap
            textcoords="offset points",
            fontsize=8,
            va="bottom",
        )
    fig.suptitle(
        f"RayDog autoscaling on the local backend (idle timeout {int(IDLE_TIMEOUT_MINUTES * 60)} s, "
        "autoscaler round 1 s, workers of 2 CPUs, head 1 CPU)",
        fontsize=10,
        y=0.995,
    )
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image)
    plt.close(fig)


def run() -> dict[str, Any]:
    home = {} if "RAYDOG_HOME" in os.environ else {"RAYDOG_HOME": tempfile.mkdtemp(prefix="raydog-bench-")}
    with (
        tempfile.TemporaryDirectory(prefix="rd-bench-timeline-") as directory,
        mock.patch.dict(os.environ, home),
    ):
        timeline = record_run(Path(directory))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(timeline, indent=1) + "\n")
    plot(timeline, IMAGE)
    return {
        **summarise(timeline),
        "image": str(IMAGE.relative_to(REPO)),
        "samples_file": str(RESULTS.relative_to(REPO)),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
