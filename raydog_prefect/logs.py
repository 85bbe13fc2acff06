"""Getting logs written by tasks on Ray workers into the Prefect API, at no per-task wait.

Prefect batches a process's API logs and sends them every couple of seconds. Ray kills a driver's
worker processes without running atexit when the driver disconnects, so with stock prefect-ray the
last batch of every worker never reaches the API. Flushing in each task costs an HTTP round trip per
task (measured: 1.7x the per-task time), so instead, as Prefect's own ProcessPoolTaskRunner does, each
task's API logs are captured with `set_api_log_sink` and handed, fire-and-forget, to one small
forwarder actor per Ray job. The forwarder sends them in Prefect's usual batches; before the driver
disconnects, the runner waits (bounded) until every task it submitted has handed its logs over and
the forwarder has sent them.

A run on a warm cluster (a `reuse_key`) uses one forwarder shared by every run that sends to the same
Prefect API: detached, it outlives the run and ends with the cluster. A per-job forwarder is a Ray
actor process that imports Prefect for every run, beside the run's own task worker; on two cores it
made a warm run about a second slower (measured in benchmarks/warm_reuse.py).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

log = logging.getLogger("raydog")

FLUSH_TIMEOUT_S = 30.0
SHARED_NAMESPACE = "raydog-prefect"  # the Ray namespace of the forwarders warm clusters share
ARRIVALS_KEPT_S = 3600.0  # a shared forwarder forgets arrivals nobody flushed (their driver died)
_NAME_PREFIX = "raydog-prefect-logs-"
_handles: dict[str, Any] = {}  # per worker process: job id -> forwarder handle


class LogForwarder:
    """Ray actor: receives each task's API logs and sends them to the Prefect API in batches."""

    def __init__(self, settings_context: dict[str, Any]) -> None:
        self._settings_context = settings_context
        self._arrived: dict[str, float] = {}  # task run id -> when its logs arrived
        self._changed = threading.Condition()

    def forward(self, task_run_id: str, logs: list[dict[str, Any]]) -> None:
        from prefect.logging.handlers import APILogWorker

        if logs:
            with self._settings():
                worker = APILogWorker.instance()
                for entry in logs:
                    worker.send(entry)
        with self._changed:
            now = time.monotonic()
            self._arrived = {run: at for run, at in self._arrived.items() if now - at < ARRIVALS_KEPT_S}
            self._arrived[task_run_id] = now
            self._changed.notify_all()

    def flush(self, task_run_ids: list[str], timeout_s: float) -> int:
        """Wait until these task runs handed over their logs, send everything; returns how many did not."""
        from prefect.logging.handlers import APILogWorker

        wanted = set(task_run_ids)
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not wanted <= self._arrived.keys() and time.monotonic() < deadline:
                self._changed.wait(timeout=max(deadline - time.monotonic(), 0.0))
            missing = len(wanted - self._arrived.keys())
            for run in wanted:
                self._arrived.pop(run, None)
        with self._settings():
            APILogWorker.drain_all(timeout=max(deadline - time.monotonic(), 1.0))
        return missing

    @contextmanager
    def _settings(self) -> Iterator[None]:
        from prefect.context import SettingsContext

        if self._settings_context:
            with SettingsContext(**self._settings_context):
                yield
        else:
            yield


def forwarder_name(job_id: str) -> str:
    return _NAME_PREFIX + job_id


def shared_forwarder_name(settings_context: dict[str, Any]) -> str:
    """The shared forwarder of runs that send logs to one Prefect API with one key: named by a digest of
    the settings' `api` part only, so a task submitted under other settings (say, a logging level set
    with `temporary_settings`) still finds its run's forwarder, and runs against another API never do."""
    api = (settings_context.get("settings") or {}).get("api") or {}
    serialized = json.dumps(api, sort_keys=True, default=str).encode()
    return _NAME_PREFIX + hashlib.sha256(serialized).hexdigest()[:16]


def start_forwarder(shared: bool = False) -> Any:
    """The forwarder of this driver's Ray job (call in the driver, Ray connected): the one an outer
    runner of the job (a parent flow) chose already, else a new one.

    shared: the detached forwarder of this run's Prefect settings, for a warm cluster (see the module's
    docstring); it ends with the cluster.
    """
    import ray
    from prefect.context import SettingsContext

    settings = SettingsContext.get()
    serialized = settings.serialize() if settings else {}
    existing = _existing_forwarder(serialized)
    if existing is not None:
        return existing
    if shared:
        placement: dict[str, Any] = {
            "name": shared_forwarder_name(serialized),
            "namespace": SHARED_NAMESPACE,
            "lifetime": "detached",
            "max_concurrency": 32,  # flushes of concurrent runs wait while forward() calls arrive
        }
    else:
        placement = {
            "name": forwarder_name(ray.get_runtime_context().get_job_id()),
            "max_concurrency": 8,  # flush() waits while forward() calls keep arriving
        }
    actor = ray.remote(LogForwarder).options(get_if_exists=True, num_cpus=0, **placement)
    return actor.remote(serialized)


def flush_forwarder(
    forwarder: Any, task_run_ids: Iterable[UUID | str], timeout_s: float = FLUSH_TIMEOUT_S
) -> int:
    """Wait (bounded) until the forwarder sent the logs of these task runs; returns how many are missing."""
    import ray

    ids = [str(task_run_id) for task_run_id in task_run_ids]
    return ray.get(forwarder.flush.remote(ids, timeout_s), timeout=timeout_s + 10.0)


@contextmanager
def logs_forwarded(task_run_id: UUID | str, settings_context: dict[str, Any]) -> Iterator[None]:
    """On a Ray worker: capture the API logs written inside the block and hand them to the forwarder.

    settings_context: the driver's serialized Prefect settings (prefect-ray sends them with every
    task), which name a shared forwarder. Without a forwarder (a runner that did not start one) logs
    take Prefect's usual path.
    """
    from prefect.logging.handlers import set_api_log_sink

    forwarder = _forwarder_of_this_job(settings_context)
    if forwarder is None:
        yield
        return
    captured: list[dict[str, Any]] = []
    set_api_log_sink(captured.append)
    try:
        yield
    finally:
        set_api_log_sink(None)
        try:
            forwarder.forward.remote(str(task_run_id), captured)
        except Exception:
            log.warning("could not hand task run %s's logs to the forwarder", task_run_id, exc_info=True)


def _forwarder_of_this_job(settings_context: dict[str, Any]) -> Any:
    import ray

    job_id = ray.get_runtime_context().get_job_id()
    if job_id not in _handles:  # only found handles are kept: a forwarder may start after a miss
        found = _existing_forwarder(settings_context)
        if found is None:
            return None
        _handles[job_id] = found
    return _handles[job_id]


def _existing_forwarder(settings_context: dict[str, Any]) -> Any:
    """The job's own forwarder, else the shared one of its settings; None when there is neither.

    Drivers and workers look in this one order, so all of a job's tasks and runners agree.
    """
    import ray

    context = ray.get_runtime_context()
    candidates = [
        (forwarder_name(context.get_job_id()), context.namespace),
        (shared_forwarder_name(settings_context), SHARED_NAMESPACE),
    ]
    for name, namespace in candidates:
        try:
            return ray.get_actor(name, namespace=namespace)
        except ValueError:
            continue
    return None
