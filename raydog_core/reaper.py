"""Find and shut down clusters nobody owns any more: by label, by age, or whose run has finished.

Used by `raydog list` / `raydog reap`, by the Prefect crash hooks and the Airflow failure callbacks.
It only ever selects clusters RayDog created (the backend lists only those) and only those matching
every part of the selector.

Whether a cluster's orchestrator run is over is asked of the orchestrator, by a check the integration
plugs in through the `raydog.run_status` entry-point group (`prefect`, `airflow`): the core never
imports an integration, and a new orchestrator adds its check without touching the core.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import entry_points
from typing import Protocol

from raydog_core import auth, postmortem
from raydog_core.backends import Backend
from raydog_core.backends.base import ClusterRecord
from raydog_core.lifecycle import forget_secrets, shut_down_cluster

log = logging.getLogger("raydog")

RunFinished = Callable[[ClusterRecord], bool]
RUN_STATUS_GROUP = "raydog.run_status"
REAPED = "reaped (raydog reap, a Prefect crash hook or an Airflow failure callback)"
ENDED_BY_ITSELF = "ended by itself (its leases lapsed, it was idle for its idle_ttl, or its lifetime ended)"


class RunFinishedFactory(Protocol):
    """What a `raydog.run_status` entry point names: makes the check; ValueError if it cannot."""

    def __call__(self, api_url: str | None = None) -> RunFinished: ...


def run_status_sources() -> list[str]:
    """The orchestrators whose run-status checks are installed (entry-point names)."""
    return sorted({entry.name for entry in entry_points(group=RUN_STATUS_GROUP)})


def run_finished_check(source: str, api_url: str | None = None) -> RunFinished:
    """The check of one orchestrator, loaded only now (it may import that orchestrator).

    Raises ValueError, naming the fix, when no such check is installed or it cannot be loaded.
    """
    found = entry_points(group=RUN_STATUS_GROUP, name=source)
    if not found:
        raise ValueError(f"no run-status check for {source!r}; installed: {', '.join(run_status_sources())}")
    entry = next(iter(found))
    try:
        factory: RunFinishedFactory = entry.load()
        return factory(api_url=api_url)
    except ImportError as error:  # the orchestrator is imported on load or when the check is made
        raise ValueError(
            f"--run-finished {source} cannot load its check ({error}): "
            f"install the integration, e.g. pip install 'raydog[{source}]'"
        ) from None


@dataclass(frozen=True)
class Selector:
    """Which clusters to reap; every given part must match. An empty selector matches nothing."""

    labels: Mapping[str, str] = field(default_factory=dict)
    older_than: timedelta | None = None
    name: str | None = None
    run_finished: RunFinished | None = None  # asks the orchestrator whether the cluster's run is over

    def is_empty(self) -> bool:
        return not (self.labels or self.older_than or self.name or self.run_finished)

    def matches(self, record: ClusterRecord, now: datetime | None = None) -> bool:
        if self.is_empty():
            return False
        if any(record.labels.get(key) != value for key, value in self.labels.items()):
            return False
        if self.name is not None and record.name != self.name:
            return False
        if self.older_than is not None:
            age = (now or datetime.now(UTC)) - record.created_at
            if age < self.older_than:
                return False
        return not (self.run_finished is not None and not self.run_finished(record))


@dataclass(frozen=True)
class ReapResult:
    cluster: ClusterRecord
    shut_down: bool  # False in a dry run
    failures: list[str] = field(default_factory=list)


def select_clusters(
    backend: Backend, selector: Selector, include_stopped: bool = False
) -> list[ClusterRecord]:
    now = datetime.now(UTC)
    return [
        record
        for record in backend.list_clusters()  # no tidying here: a dry run changes nothing
        if (include_stopped or record.state != "stopped") and selector.matches(record, now)
    ]


def list_and_tidy(backend: Backend) -> list[ClusterRecord]:
    """Every cluster the backend lists; a cluster that ended by itself (a lapsed lease, idleness, its
    lifetime), or whose shut-down was cut short, is finished off here, so nothing of it stays but logs:
    the secrets this machine kept, and on YellowDog what the platform still holds (pools waiting for
    their idle shutdown, node files of nodes that shared this host), through the same idempotent
    shut-down as every door."""
    records = backend.list_clusters()
    tokens = set(auth.TOKENS.cluster_ids())
    for record in records:
        if record.state == "ended":
            forget_secrets(record.cluster_id)  # the local backend removed the rest when it marked it
            postmortem.write(backend, record.cluster_id, ENDED_BY_ITSELF)
        elif record.state == "ending":
            shut_down_cluster(backend, record.cluster_id, reason=ENDED_BY_ITSELF)
        elif record.state == "stopped" and record.cluster_id in tokens:
            # A shut-down that did not finish: one run from inside the cluster (the head's autoscaler
            # ending it) stops its own process before it removes the temp dir and secrets.
            shut_down_cluster(backend, record.cluster_id, reason="shut down (finished by a later listing)")
    listed = {record.cluster_id for record in records}
    for cluster_id in tokens:
        if cluster_id not in listed and _ended_unlisted(backend, cluster_id):
            shut_down_cluster(backend, cluster_id, reason=ENDED_BY_ITSELF)
    return records


def _ended_unlisted(backend: Backend, cluster_id: str) -> bool:
    """A cluster the backend no longer lists but knows, whose every node has finished (YellowDog: a
    finished work requirement). One it does not know (another backend's, another account's) is left."""
    try:
        nodes = backend.list_nodes(cluster_id)
    except Exception:  # noqa: BLE001 - not this backend's cluster, or not reachable now: leave it
        return False
    return bool(nodes) and all(node.status.is_final for node in nodes)


def reap(backend: Backend, selector: Selector, dry_run: bool = False) -> list[ReapResult]:
    """Shut down every running cluster the selector matches; a dry run only reports them."""
    results = []
    for record in select_clusters(backend, selector):
        if dry_run:
            log.info("would shut down cluster %s (%s)", record.name, record.cluster_id)
            results.append(ReapResult(record, shut_down=False))
            continue
        log.info("shutting down cluster %s (%s)", record.name, record.cluster_id)
        failures = shut_down_cluster(backend, record.cluster_id, reason=REAPED)
        results.append(ReapResult(record, shut_down=True, failures=failures))
    return results


def shut_down_labelled(backend: Backend, labels: Mapping[str, str]) -> list[ReapResult]:
    """Shut down the running clusters carrying all these labels (e.g. a flow-run id); idempotent."""
    if not labels:
        raise ValueError("labels must not be empty: an empty selector would match every cluster")
    results = reap(backend, Selector(labels=labels))
    if not results:
        log.info("no running cluster labelled %s: nothing to shut down", dict(labels))
    return results
