"""Soak: autoscaling churn on the YellowDog emulator with faults injected, for as long as you like.

    python -m benchmarks.soak --minutes 30 [--json path]

The real RayDogNodeProvider (backend: yellowdog, the real yellowdog-sdk) drives the real emulator, with
the tag store a real redis-server on the head, the way Ray uses the provider:

* `ray up`: a client-side provider creates the head (`create_node` with head tags);
* the monitor: a head-side provider (the head's environment) runs Ray v2's round at the autoscaler's
  cadence: `non_terminated_nodes({})`, then `node_tags` / `is_running` / `internal_ip` of every node,
  then `create_node_with_resources_and_labels` or `terminate_node(s)` towards a seeded random demand
  for several node types, and now and then `set_node_tags`;
* `ray down`: a fresh client-side provider terminates the workers, the head, and the cluster.

Meanwhile the emulator answers a share of API calls with 429/5xx, kills instances, boots one pool
slowly and makes some workers' tasks fail. Nodes run tiny scripts, not Ray: the head runs only its
tag store (redis-server), workers `sleep`; so what is measured is the provider, the backend and the
tag store. (A head reported `up-to-date` makes the provider wait for Ray on it, so the soak never
sets that tag on the head, as the monitor never does.)

Checked every round, against the backend's truth read from the emulator just before and just after
the provider's answer (only this driver creates nodes, so live sets only shrink in between):
the provider's non-terminated nodes are exactly the live nodes; tags exist in Redis for exactly those
nodes; every node has a kind and a type; one head; no exception escapes the provider that is not a
documented RayDogError; no node type stays unlaunchable. At the end nothing may be left on the
platform (the emulator's leak accounting), every Redis key of the cluster must have been deleted
(watched with MONITOR, since the store dies with the head), and the client's memory (RSS and
tracemalloc, sampled all along) should be flat: reported as start/end/max and MB per 10 minutes.

The emulator runs in a subprocess (a multiprocessing manager on a Unix socket), so the memory
measured is the client's alone: provider, backend, SDK, Redis client and this driver.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import random
import re
import secrets
import shutil
import statistics
import tempfile
import threading
import time
import tracemalloc
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any
from unittest import mock

import psutil
import redis
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    STATUS_UNINITIALIZED,
    TAG_RAY_LAUNCH_CONFIG,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_NAME,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from raydog_core import naming
from raydog_core.autoscaler import RayDogNodeProvider
from raydog_core.autoscaler.provider import TAG_STORE_PORT_LABEL
from raydog_core.backends.yellowdog.backend import YellowDogBackend
from raydog_core.backends.yellowdog.placement import PLACEMENT_ENV
from raydog_core.errors import RayDogError
from raydog_core.spec import NodePlacement
from raydog_core.tagstore import TagStore, TagStoreError
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator, Faults
from raydog_core.testing.emulator.entities import TASK_FINISHED

TEMPLATE = DEFAULT_TEMPLATES[0]
HEAD_TYPE = "head"
# The head runs only the tag store, exactly as RayDog's head script starts it (password from a file).
HEAD_SCRIPT = """#!/usr/bin/env bash
set -euo pipefail
printf 'port %s\\nbind 127.0.0.1\\nprotected-mode yes\\nrequirepass %s\\nsave ""\\nappendonly no\\n' \\
  "$RAYDOG_TAG_STORE_PORT" "$(cat "$RAYDOG_TAG_STORE_PASSWORD_FILE")" | exec redis-server -
"""
WORKER_SCRIPT = "#!/usr/bin/env bash\nexec sleep 7200\n"
# name: (Ray resources, max workers); the pool of `SLOW_TYPE` boots slowly.
WORKER_TYPES: dict[str, tuple[dict[str, int], int]] = {
    "cpu_small": ({"CPU": 1}, 4),
    "cpu_large": ({"CPU": 4}, 3),
    "accel": ({"CPU": 2, "accel": 1}, 2),
}
SLOW_TYPE = "cpu_large"
MAX_LAUNCH_BATCH = 5  # Ray v2 launches at most this many nodes per create call
STUCK_ROUNDS = 10  # a node type whose launches fail this many rounds in a row is a violation
MEMORY_SAMPLE_S = 10.0


@dataclass
class SoakSettings:
    minutes: float = 30.0
    seed: int = 6
    interval_s: float = 2.0  # the monitor's cadence (AUTOSCALER_UPDATE_INTERVAL_S; Ray's default is 5)
    error_rate: float = 0.05  # share of API requests answered 429/500/502/503
    death_rate: float = 0.04  # chance per round that a running worker's instance dies
    failing_share: int = 16  # 1 in this many workers' tasks fail at once (0: none; 1 to 16)
    boot_delay_s: float = 0.3
    slow_boot_delay_s: float = 6.0
    idle_shutdown_s: float = 60.0  # idle nodes and empty pools go away (YellowDog's default here: 180)
    demand_change_rate: float = 0.2  # chance per round that one type's demand moves
    warmup_fraction: float = 0.1  # memory samples before this share of the run are warm-up


# -- the emulator, in a process of its own ------------------------------------------------------------


class EmulatorControl:
    """The emulator and its fault knobs, as the soak drives them from the client process."""

    def __init__(self, seed: int) -> None:
        self._emulator = Emulator(faults=Faults(seed=seed)).start()
        self._random = random.Random(seed)

    def endpoint(self) -> tuple[str, str, str]:
        return self._emulator.url, self._emulator.key_id, self._emulator.key_secret

    def set_faults(self, **values: Any) -> None:
        for name, value in values.items():
            setattr(self._emulator.faults, name, value)

    def injected_errors(self) -> int:
        return self._emulator.faults.injected_errors

    def calls(self) -> int:
        return self._emulator.calls

    def live_nodes(self, cluster_name: str) -> dict[str, str]:
        """The platform's truth: task name -> role of every unfinished task of the cluster."""
        platform = self._emulator.platform
        with platform.lock:
            return {
                task.name: task.spec.get("tag", "")
                for requirement in platform.requirements.values()
                if requirement.name == cluster_name and not requirement.finished
                for task in requirement.tasks()
                if task.status not in TASK_FINISHED and task.name
            }

    def kill_random_worker(self, cluster_name: str) -> str | None:
        """Fault: the instance of one running worker dies. Returns its task's name."""
        platform = self._emulator.platform
        with platform.lock:
            running = sorted(
                task.name
                for requirement in platform.requirements.values()
                if requirement.name == cluster_name and not requirement.finished
                for task in requirement.tasks()
                if task.status == "EXECUTING"
                and task.instance is not None
                and task.spec.get("tag") == "worker"
            )
        if not running:
            return None
        name = self._random.choice(running)
        try:
            self._emulator.kill_instance_of_task(name)
        except LookupError:
            return None  # it finished meanwhile
        return name

    def census(self, cluster_name: str) -> dict[str, int]:
        """Counts for the report: tasks by outcome, instances alive and idle."""
        platform = self._emulator.platform
        with platform.lock:
            tasks = [t for r in platform.requirements.values() if r.name == cluster_name for t in r.tasks()]
            instances = [i for i in platform.instances.values() if i.alive]
            errors = Counter(t.errors[-1].get("errorType") for t in tasks if t.errors)
            return {
                "tasks": len(tasks),
                "tasks_failed_by_exit": errors["PROCESS_NON_ZERO_EXIT"],
                "tasks_lost_with_instance": errors["ALLOCATION_LOST"],
                "instances_alive": len(instances),
                "instances_idle": sum(1 for i in instances if i.current_task is None),
            }

    def pools(self, cluster_name: str) -> dict[str, str]:
        """Status of the newest worker pool of each name of the cluster."""
        with self._emulator.platform.lock:
            return {
                p.name: p.status
                for p in self._emulator.platform.pools.values()
                if p.name.startswith(cluster_name + "-")
            }

    def wait_until_clean(self, timeout_s: float) -> list[str]:
        return self._emulator.wait_until_clean(timeout_s)

    def stop(self) -> list[str]:
        return self._emulator.stop()


class _EmulatorManager(BaseManager):
    pass


_EmulatorManager.register("EmulatorControl", EmulatorControl)


@contextlib.contextmanager
def emulator_process(seed: int) -> Iterator[EmulatorControl]:
    """An EmulatorControl in a spawned process (Unix socket), stopped and its processes reaped at exit."""
    manager = _EmulatorManager(ctx=multiprocessing.get_context("spawn"))
    manager.start()
    try:
        control = manager.EmulatorControl(seed)  # type: ignore[attr-defined]
        try:
            yield control
        finally:
            left = control.stop()
            if left:
                raise RuntimeError(f"emulator processes that would not stop: {left}")
    finally:
        manager.shutdown()


# -- the cluster --------------------------------------------------------------------------------------


def cluster_config(name: str, settings: SoakSettings) -> dict[str, Any]:
    """A `ray up` YAML's content for the YellowDog backend, as the CLI would load it."""
    template = {"compute_requirement_template": TEMPLATE}
    types: dict[str, Any] = {
        HEAD_TYPE: {"resources": {"CPU": 1}, "node_config": template, "min_workers": 0, "max_workers": 0}
    }
    for type_name, (resources, max_workers) in WORKER_TYPES.items():
        types[type_name] = {
            "resources": resources,
            "node_config": template,
            "min_workers": 0,
            "max_workers": max_workers,
        }
    return {
        "cluster_name": name,
        "max_workers": sum(m for _, m in WORKER_TYPES.values()),
        "provider": {
            "type": "external",
            "module": "raydog_core.autoscaler.RayDogNodeProvider",
            "backend": "yellowdog",
            "cluster_namespace": "raydog",
            "ray_head_node_task_script": HEAD_SCRIPT,
            "ray_worker_node_task_script": WORKER_SCRIPT,
            "cluster_lifetime_hours": max(1.0, settings.minutes / 60 + 0.5),
            "head_node_build_timeout_minutes": 2.0,
            "head_node_tag_server_port": 0,
            "autoscaler_update_interval_s": max(1, round(settings.interval_s)),
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "raydog"},
        "available_node_types": types,
        "head_node_type": HEAD_TYPE,
    }


def pool_name(config: dict[str, Any], type_name: str) -> str:
    return config["provider"]["node_types"][type_name]["pool_name"]


# -- the run ------------------------------------------------------------------------------------------


class MemorySeries:
    """Samples in flat arrays of doubles: the soak's own bookkeeping must not pass for a leak."""

    KEYS = ("t_s", "rss_mb", "traced_mb", "round_ms_median")

    def __init__(self) -> None:
        self._columns = {key: array("d") for key in self.KEYS}

    def add(self, **values: float) -> None:
        for key in self.KEYS:
            self._columns[key].append(values[key])

    def last(self) -> dict[str, float]:
        return {key: column[-1] for key, column in self._columns.items()} if self._columns["t_s"] else {}

    def rows(self) -> list[dict[str, float]]:
        return [
            dict(zip(self.KEYS, values, strict=True)) for values in zip(*self._columns.values(), strict=True)
        ]


@dataclass
class Tally:
    rounds: int = 0
    nodes_requested: int = 0
    nodes_terminated: int = 0
    create_calls: int = 0
    terminate_calls: int = 0
    set_tags_calls: int = 0
    instance_deaths: int = 0
    documented_errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    memory: MemorySeries = field(default_factory=lambda: MemorySeries())
    growth: list[str] = field(default_factory=list)  # where traced memory grew after the warm-up
    platform_max: dict[str, int] = field(
        default_factory=lambda: {"instances_alive": 0, "instances_idle": 0, "tasks": 0}
    )

    violation_count: int = 0  # all of them; `violations` keeps the first 200

    def violate(self, text: str) -> None:
        self.violation_count += 1
        if len(self.violations) < 200:
            self.violations.append(f"round {self.rounds}: {text}")


class Soak:
    """One soak run; see the module docstring."""

    def __init__(self, control: EmulatorControl, settings: SoakSettings, log: Callable[[str], None]) -> None:
        self.control = control
        self.settings = settings
        self.log = log
        self.random = random.Random(settings.seed)
        self.name = f"soak-{secrets.token_hex(3)}"
        self.tally = Tally()
        url, key_id, key_secret = control.endpoint()
        self._credentials = {"YD_API_URL": url, "YD_API_KEY_ID": key_id, "YD_API_KEY_SECRET": key_secret}
        self.config = RayDogNodeProvider.bootstrap_config(cluster_config(self.name, settings))
        self.demand = dict.fromkeys(WORKER_TYPES, 0)
        self._failing_launches = Counter[str]()
        self._checker: TagStore | None = None
        self.cluster_id = ""
        self._tag_store_port = ""
        self._baseline: tracemalloc.Snapshot | None = None
        self._round_ms: list[float] = []  # the autoscaler round's provider calls, since the last sample

    # -- providers as Ray builds them, each with its own backend ------------------------------------

    def _backend(self) -> YellowDogBackend:
        from raydog_core.credentials import YellowDogCredentials

        with mock.patch.dict(os.environ, self._credentials):
            credentials = YellowDogCredentials.resolve()
        return YellowDogBackend(
            credentials,
            placement=NodePlacement.SHARED_HOST,  # the emulator's instances are processes on this host
            idle_shutdown=timedelta(seconds=self.settings.idle_shutdown_s),
        )

    def _client_provider(self) -> RayDogNodeProvider:
        return RayDogNodeProvider(self.config["provider"], self.name, backend=self._backend())

    def _head_environment(self) -> dict[str, str]:
        """What the head's node script gives the monitor (see RayDogNodeProvider._head_env)."""
        home = Path(os.environ["RAYDOG_HOME"])
        return {
            "RAYDOG_ROLE": "head",
            "RAYDOG_CLUSTER_NAME": self.name,
            "RAYDOG_CLUSTER_ID": self.cluster_id,
            "RAYDOG_TAG_STORE_PORT": self._tag_store_port,
            "RAYDOG_TAG_STORE_PASSWORD_FILE": str(
                home / "autoscaler" / self.cluster_id / "tag-store.password"
            ),
        }

    # -- phases --------------------------------------------------------------------------------------

    def up(self) -> None:
        """`ray up`: the head, created from the client."""
        provider = self._client_provider()
        head_tags = {
            TAG_RAY_NODE_KIND: NODE_KIND_HEAD,
            TAG_RAY_USER_NODE_TYPE: HEAD_TYPE,
            TAG_RAY_NODE_STATUS: STATUS_UNINITIALIZED,
            TAG_RAY_LAUNCH_CONFIG: "soak",
            TAG_RAY_NODE_NAME: f"ray-{self.name}-head",
        }
        provider.create_node({}, head_tags, 1)
        # `ray up` ends by reporting the head up to date, which waits for Ray on it; this head runs only
        # its tag store, so the soak does what that step does for the provider: `ray up` is finished.
        provider._up_guard.disarm()
        (head,) = provider.non_terminated_nodes(head_tags)
        record = next(r for r in provider._backend.list_clusters() if r.name == self.name)
        self.cluster_id, self._tag_store_port = record.cluster_id, record.labels[TAG_STORE_PORT_LABEL]
        self.log(f"cluster {self.name} ({self.cluster_id}): head {head} up")
        env = self._head_environment()
        self._checker = TagStore.on_head(
            self.name, int(env["RAYDOG_TAG_STORE_PORT"]), env["RAYDOG_TAG_STORE_PASSWORD_FILE"]
        )
        provider._backend.close()

    def churn(self) -> None:
        """The monitor on the head, round after round, with faults on."""
        settings = self.settings
        # Task names end in a random hex digit: 1 in `failing_share` workers fails at once.
        digits = "0123456789abcdef"[:: min(max(settings.failing_share, 1), 16)]
        fail_pattern = "|".join(
            f"^{naming.task_group_name(self.name, pool_name(self.config, t))}(-g[0-9]+)?-[0-9a-f]{{5}}[{digits}]$"
            for t in WORKER_TYPES
        )
        self.control.set_faults(
            error_rate=settings.error_rate,
            boot_delay_s=settings.boot_delay_s,
            boot_delay_by_pool={pool_name(self.config, SLOW_TYPE): settings.slow_boot_delay_s},
            fail_tasks=fail_pattern if settings.failing_share else None,
        )
        try:
            with self.monitor() as monitor:
                self._rounds(monitor)
        finally:
            self.control.set_faults(error_rate=0.0, fail_tasks=None)

    @contextlib.contextmanager
    def monitor(self) -> Iterator[RayDogNodeProvider]:
        """The provider as the head's monitor builds it; this process has the head's environment meanwhile."""
        with mock.patch.dict(os.environ, self._head_environment()):
            monitor = RayDogNodeProvider(self.config["provider"], self.name, backend=self._backend())
            try:
                yield monitor
            finally:
                monitor._backend.close()

    def _rounds(self, monitor: RayDogNodeProvider) -> None:
        settings = self.settings
        process = psutil.Process()
        started = time.monotonic()
        deadline = started + settings.minutes * 60
        next_sample = started
        warmup_s = settings.minutes * 60 * settings.warmup_fraction
        while time.monotonic() < deadline:
            round_started = time.monotonic()
            self.tally.rounds += 1
            self._move_demand()
            self._autoscaler_round(monitor)
            self._round_ms.append((time.monotonic() - round_started) * 1000)
            if self.random.random() < settings.death_rate and self.control.kill_random_worker(self.name):
                self.tally.instance_deaths += 1
            self._check(monitor)
            if round_started >= next_sample:
                self._sample_memory(process, round_started - started)
                next_sample += MEMORY_SAMPLE_S
                if self._baseline is None and round_started - started >= warmup_s:
                    self._baseline = tracemalloc.take_snapshot()
            if self.tally.rounds % 30 == 0:
                self.log(self._progress(round_started - started))
            time.sleep(max(0.0, settings.interval_s - (time.monotonic() - round_started)))
        self._sample_memory(process, time.monotonic() - started)
        if self._baseline is not None:
            self.tally.growth = _top_growth(self._baseline, tracemalloc.take_snapshot())

    def down(self) -> dict[str, Any]:
        """`ray down` from a fresh client: workers, head, cluster; then the leak accounting."""
        provider = self._client_provider()
        workers = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_WORKER})
        if workers:
            provider.terminate_nodes(workers)
        assert self._checker is not None
        head_only = self._tagged() - set(provider.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_HEAD}))
        if head_only:
            self.tally.violate(f"after terminating the workers, tags remain for {sorted(head_only)}")
        keys_before = set(self._checker.keys())
        deleted = _watch_deletes(self._checker)
        heads = provider.non_terminated_nodes({TAG_RAY_NODE_KIND: NODE_KIND_HEAD})
        provider.terminate_nodes(heads)
        provider.cleanup_cluster_resources()
        provider._backend.close()
        time.sleep(0.5)
        keys_left = sorted(keys_before - deleted())
        self._checker.close()
        leaks = self.control.wait_until_clean(60)
        private = Path(os.environ["RAYDOG_HOME"]) / "autoscaler" / self.cluster_id
        if private.exists():
            leaks.append(f"client files {private}")
        return {"leaks": leaks, "redis_keys_left": keys_left, "redis_keys_at_teardown": len(keys_before)}

    # -- one round of Ray v2's reconciler, as it calls the provider ------------------------------------

    def _move_demand(self) -> None:
        if self.random.random() >= self.settings.demand_change_rate:
            return
        roll = self.random.random()
        if roll < 0.1:
            self.demand = dict.fromkeys(WORKER_TYPES, 0)  # everything idle: pools may shut down
        elif roll < 0.15:
            self.demand = {t: m for t, (_, m) in WORKER_TYPES.items()}  # a burst
        else:
            type_name = self.random.choice(sorted(WORKER_TYPES))
            self.demand[type_name] = self.random.randint(0, WORKER_TYPES[type_name][1])

    def _autoscaler_round(self, monitor: RayDogNodeProvider) -> None:
        ids = self._call("non_terminated_nodes", monitor.non_terminated_nodes, {})
        if ids is None:
            return
        by_type: dict[str, list[str]] = {t: [] for t in WORKER_TYPES}
        for node_id in ids:
            tags = self._call("node_tags", monitor.node_tags, node_id) or {}
            self._call("is_running", monitor.is_running, node_id)
            self._call("internal_ip", monitor.internal_ip, node_id)
            if (
                tags.get(TAG_RAY_NODE_KIND) == NODE_KIND_WORKER
                and tags.get(TAG_RAY_USER_NODE_TYPE) in by_type
            ):
                by_type[tags[TAG_RAY_USER_NODE_TYPE]].append(node_id)
        for type_name, nodes in by_type.items():
            missing = self.demand[type_name] - len(nodes)
            if missing > 0:
                self.launch(monitor, type_name, min(missing, MAX_LAUNCH_BATCH))
            elif missing < 0:
                self._terminate(monitor, self.random.sample(sorted(nodes), -missing))
        if ids and self.random.random() < 0.1:
            node_id = self.random.choice(sorted(ids))
            self.tally.set_tags_calls += 1
            self._call(
                "set_node_tags", monitor.set_node_tags, node_id, {"soak-round": str(self.tally.rounds)}
            )

    def launch(self, monitor: RayDogNodeProvider, type_name: str, count: int) -> None:
        node_type = self.config["available_node_types"][type_name]
        tags = {
            TAG_RAY_NODE_KIND: NODE_KIND_WORKER,
            TAG_RAY_USER_NODE_TYPE: type_name,
            TAG_RAY_NODE_STATUS: STATUS_UNINITIALIZED,
            TAG_RAY_LAUNCH_CONFIG: "soak",
            TAG_RAY_NODE_NAME: f"ray-{self.name}-worker",
            "ray-launch-request": secrets.token_hex(4),
        }
        self.tally.create_calls += 1
        done = self._call(
            "create_node_with_resources_and_labels",
            lambda: (
                monitor.create_node_with_resources_and_labels(
                    node_type["node_config"], tags, count, node_type["resources"], {}
                )
                or True
            ),
        )
        if done is None:
            self._failing_launches[type_name] += 1
            if self._failing_launches[type_name] == STUCK_ROUNDS:
                self.tally.violate(f"launches of {type_name} failed {STUCK_ROUNDS} rounds in a row")
        else:
            self._failing_launches[type_name] = 0
            self.tally.nodes_requested += count

    def _terminate(self, monitor: RayDogNodeProvider, node_ids: list[str]) -> None:
        self.tally.terminate_calls += 1
        if len(node_ids) == 1 and self.random.random() < 0.5:
            done = self._call("terminate_node", lambda: monitor.terminate_node(node_ids[0]) or True)
        else:
            done = self._call("terminate_nodes", lambda: monitor.terminate_nodes(node_ids) or True)
        if done is not None:
            self.tally.nodes_terminated += len(node_ids)

    def _call(self, what: str, function: Callable[..., Any], *args: Any) -> Any:
        """A provider call; a documented error (RayDogError) is tallied, anything else is a violation."""
        try:
            return function(*args)
        except RayDogError as error:
            self.tally.documented_errors[f"{what}: {type(error).__name__}: {str(error)[:160]}"] += 1
        except Exception as error:  # noqa: BLE001 - what escapes the provider is what the soak looks for
            self.tally.violate(f"{what} raised {type(error).__name__}: {str(error)[:300]}")
        return None

    # -- invariants ----------------------------------------------------------------------------------

    def _check(self, monitor: RayDogNodeProvider) -> None:
        before = self.control.live_nodes(self.name)
        ids = self._call("non_terminated_nodes", monitor.non_terminated_nodes, {})
        after = self.control.live_nodes(self.name)
        if ids is None:
            return
        listed = set(ids)
        if ghosts := listed - set(before):
            self.tally.violate(f"provider lists nodes the platform has finished: {sorted(ghosts)}")
        if missed := set(after) - listed:
            self.tally.violate(f"provider misses live nodes: {sorted(missed)}")
        try:
            tagged = self._tagged()
        except TagStoreError as error:
            self.tally.violate(f"tag store unreadable: {error}")
            return
        if stale := tagged - listed:
            self.tally.violate(f"tags of nodes that are gone: {sorted(stale)}")
        if untagged := listed - tagged:
            self.tally.violate(f"live nodes without tags: {sorted(untagged)}")
        tags = {n: self._call("node_tags", monitor.node_tags, n) or {} for n in ids}
        heads = [n for n in ids if tags[n].get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD]
        if len(heads) != 1:
            self.tally.violate(f"{len(heads)} heads")
        for node_id, node_tags in tags.items():
            if not node_tags.get(TAG_RAY_USER_NODE_TYPE) or not node_tags.get(TAG_RAY_NODE_KIND):
                self.tally.violate(f"node {node_id} lacks its kind or type: {node_tags}")

    def _tagged(self) -> set[str]:
        """Node ids with tags in Redis; the index and the per-node hashes must agree."""
        assert self._checker is not None
        prefix = f"raydog:{self.name}:node:"
        keyed = {k.removeprefix(prefix) for k in self._checker.keys() if k.startswith(prefix)}  # noqa: SIM118
        _, index = self._checker.read_all([])
        if keyed != index:
            self.tally.violate(f"tag index and node hashes disagree: {sorted(keyed ^ index)}")
        return keyed | index

    # -- memory --------------------------------------------------------------------------------------

    def _sample_memory(self, process: psutil.Process, elapsed_s: float) -> None:
        census = self.control.census(self.name)
        for key, value in self.tally.platform_max.items():
            self.tally.platform_max[key] = max(value, census[key])
        self.tally.memory.add(
            t_s=round(elapsed_s, 1),
            rss_mb=round(process.memory_info().rss / 2**20, 2),
            traced_mb=round(tracemalloc.get_traced_memory()[0] / 2**20, 3),
            # Does a round get slower as the platform's history grows (finished tasks stay listed)?
            round_ms_median=round(statistics.median(self._round_ms), 1) if self._round_ms else 0.0,
        )
        self._round_ms.clear()

    def _progress(self, elapsed_s: float) -> str:
        last = self.tally.memory.last()
        return (
            f"[{elapsed_s / 60:5.1f} min] rounds {self.tally.rounds}, requested {self.tally.nodes_requested}, "
            f"terminated {self.tally.nodes_terminated}, deaths {self.tally.instance_deaths}, "
            f"violations {self.tally.violation_count}, rss {last.get('rss_mb')} MB, "
            f"traced {last.get('traced_mb')} MB"
        )


def _top_growth(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, count: int = 8) -> list[str]:
    ignored = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, __file__)]
    diffs = after.filter_traces(ignored).compare_to(before.filter_traces(ignored), "lineno")
    return [
        f"{_short(d.traceback[0].filename)}:{d.traceback[0].lineno} "
        f"{d.size_diff / 1024:+.1f} KiB ({d.count_diff:+d} blocks)"
        for d in sorted(diffs, key=lambda d: d.size_diff, reverse=True)[:count]
        if d.size_diff > 0
    ]


def _short(filename: str) -> str:
    """A source file's path from its package on (no machine paths in the report)."""
    return re.split(r"/lib/python3\.\d+/(?:site-packages/)?|/(?=raydog_core/|benchmarks/)", filename)[-1]


def _watch_deletes(store: TagStore) -> Callable[[], set[str]]:
    """Keys deleted from now on, seen through Redis MONITOR (the store dies with the head)."""
    client = store._client
    deleted: set[str] = set()
    ready = threading.Event()

    def watch() -> None:
        try:
            with client.monitor() as monitor:
                ready.set()
                for command in monitor.listen():
                    words = command["command"].split()
                    if words and words[0].upper() in ("DEL", "UNLINK"):
                        deleted.update(w.strip('"') for w in words[1:])
        except (redis.RedisError, OSError, ValueError):
            pass  # the server went away with the head: every delete before that was seen
        finally:
            ready.set()

    threading.Thread(target=watch, name="soak-redis-monitor", daemon=True).start()
    ready.wait(5)
    return lambda: set(deleted)


def memory_summary(samples: list[dict[str, float]], warmup_fraction: float) -> dict[str, Any]:
    """Start (after warm-up), end, max and least-squares slope in MB per 10 minutes, for RSS and traced."""
    if not samples:
        return {}
    total = samples[-1]["t_s"]
    steady = [s for s in samples if s["t_s"] >= total * warmup_fraction] or samples
    summary: dict[str, Any] = {"samples": len(samples), "warmup_s": round(total * warmup_fraction, 1)}
    timed = [s for s in steady if s.get("round_ms_median")]
    if timed:
        summary["round_ms_median"] = {
            "start": timed[0]["round_ms_median"],
            "end": timed[-1]["round_ms_median"],
        }
    for key in ("rss_mb", "traced_mb"):
        values = [s[key] for s in steady]
        times = [s["t_s"] for s in steady]
        summary[key] = {
            "first": samples[0][key],
            "start": values[0],
            "end": values[-1],
            "max": max(values),
            "slope_per_10min": round(_slope(times, values) * 600, 3),
        }
    return summary


def _slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return 0.0 if var == 0 else sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var


def run(settings: SoakSettings | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """One soak; returns the report (see `summary_line`)."""
    settings = settings or SoakSettings()
    own_home = "RAYDOG_HOME" not in os.environ
    env = {"RAYDOG_HOME": tempfile.mkdtemp(prefix="raydog-soak-")} if own_home else {}
    env[PLACEMENT_ENV] = NodePlacement.SHARED_HOST.value  # the head's monitor builds its own backend
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    started = time.monotonic()
    try:
        with mock.patch.dict(os.environ, env), emulator_process(settings.seed) as control:
            soak = Soak(control, settings, log)
            teardown: dict[str, Any] = {}
            try:
                soak.up()
                soak.churn()
            finally:
                census = control.census(soak.name) if soak.cluster_id else {}
                if soak.cluster_id:
                    teardown = soak.down()
            tally = soak.tally
            report = {
                "settings": asdict(settings),
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "cluster": soak.name,
                "wall_s": round(time.monotonic() - started, 1),
                "rounds": tally.rounds,
                "nodes_requested": tally.nodes_requested,
                "nodes_terminated": tally.nodes_terminated,
                "create_calls": tally.create_calls,
                "terminate_calls": tally.terminate_calls,
                "set_tags_calls": tally.set_tags_calls,
                "faults": {
                    "api_errors_injected": control.injected_errors(),
                    "instance_deaths": tally.instance_deaths,
                    "tasks_failed_at_start": census.get("tasks_failed_by_exit", 0),
                    "slow_boot_pool": SLOW_TYPE,
                },
                "platform_at_end": census,
                "platform_max": tally.platform_max,
                "traced_growth_after_warmup": tally.growth,
                "api_calls": control.calls(),
                "documented_errors": dict(tally.documented_errors),
                "violation_count": tally.violation_count,
                "violations": tally.violations,
                "leaks": teardown.get("leaks", ["teardown did not run"]),
                "redis_keys_at_teardown": teardown.get("redis_keys_at_teardown"),
                "redis_keys_left": teardown.get("redis_keys_left", []),
                "memory": memory_summary(tally.memory.rows(), settings.warmup_fraction),
                "memory_samples": tally.memory.rows(),
            }
    finally:
        if not tracing:
            tracemalloc.stop()
        if own_home:
            shutil.rmtree(env["RAYDOG_HOME"], ignore_errors=True)
    return report


def summary_line(report: dict[str, Any]) -> str:
    rss = report["memory"].get("rss_mb", {})
    traced = report["memory"].get("traced_mb", {})
    faults = report["faults"]
    return (
        f"soak {report['wall_s'] / 60:.1f} min: {report['rounds']} rounds, "
        f"{report['nodes_requested']} nodes requested / {report['nodes_terminated']} terminated, "
        f"faults: {faults['api_errors_injected']} API errors, {faults['instance_deaths']} instance deaths, "
        f"{faults['tasks_failed_at_start']} failed tasks; violations {report['violation_count']}, "
        f"leaks {len(report['leaks']) + len(report['redis_keys_left'])}; "
        f"RSS {rss.get('start')} -> {rss.get('end')} MB (max {rss.get('max')}, "
        f"{rss.get('slope_per_10min')} MB/10 min), traced {traced.get('start')} -> {traced.get('end')} MB "
        f"({traced.get('slope_per_10min')} MB/10 min)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=SoakSettings.seed)
    parser.add_argument("--interval", type=float, default=SoakSettings.interval_s, help="seconds per round")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args()
    settings = SoakSettings(minutes=args.minutes, seed=args.seed, interval_s=args.interval)
    report = run(settings, log=lambda text: print(text, flush=True))
    text = json.dumps(report, indent=2, default=str) + "\n"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text)
    print(summary_line(report), flush=True)
    for violation in report["violations"][:20]:
        print("  violation:", violation)
    for leak in report["leaks"] + report["redis_keys_left"]:
        print("  leak:", leak)


if __name__ == "__main__":
    main()
