"""Warm reuse: runs with the same `reuse_key` and the same spec share one cluster.

A run attaches to a live matching cluster instead of building one, holds a lease while it works and
leaves; the cluster stays warm for its idle TTL after the last lease ends, then the watchdog on its head
ends it, as for any leased cluster (`raydog_core.leases`).

What must match is the whole spec except what says who runs it (`cluster_labels`), how long one
client waits for a build (`build_timeout`) and what its drivers ship (`runtime_env`, each driver's
own): scripts count by their text, pools by their shape, and the YellowDog platform by its URL. The
match is a digest carried in the cluster's name and in its `raydog-reuse` label, so clusters of different specs never share a name (on YellowDog: never a work
requirement, whose name the platform keeps unique among live ones in a namespace).

Creation under one key is serialised by a file lock under $RAYDOG_HOME, which holds across processes on
this machine; the lock is held through a cold build, so parallel runs with one key wait for the first
and attach to its cluster. The warm cluster's state is kept beside the lock (no secret in it); it is
input like any saved state: a cluster is attached to only if its backend lists it running under this
digest, reports its head running at the addresses the state names, and its watchdog grants a lease.
Anything less is a dead warm cluster: it is shut down and replaced.

A run on another machine has no saved state of the warm cluster: it finds the cluster through its
backend (`live_record`, `state_from_platform`) and reaches it with the shared token
($RAYDOG_RAY_AUTH_TOKEN); such a cluster is never shut down from there (see `RayDogCluster`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from filelock import FileLock, Timeout

from raydog_core import leases, naming, warm_files
from raydog_core.backends.base import Backend, ClusterRecord, NodeRole, NodeStatus
from raydog_core.errors import BuildTimeoutError, StateError
from raydog_core.lifecycle import head_state, shut_down_cluster
from raydog_core.scripts import load_script
from raydog_core.spec import ClusterSpec, WorkerPoolSpec
from raydog_core.state import ClusterState, PoolState

log = logging.getLogger("raydog")

REUSE_LABEL = "raydog-reuse"
# Who runs it, how long one client waits, and what its drivers ship (runtime_env is each driver's own)
NOT_MATCHED = frozenset({"cluster_labels", "build_timeout", "runtime_env"})
DIGEST_HEX_DIGITS = naming.WARM_SUFFIX_LENGTH - len("-r")


@dataclass(frozen=True)
class WarmKey:
    """Which warm cluster a build may share: the reuse key and the digest of the spec it asks for."""

    reuse_key: str
    digest: str
    base_name: str  # the spec's cluster_name

    @classmethod
    def of(cls, spec: ClusterSpec, pools: Sequence[WorkerPoolSpec], platform: str | None) -> WarmKey:
        """The key of `spec` with these worker pools (those of the spec and any added before build)."""
        if spec.reuse_key is None:
            raise ValueError("the spec has no reuse_key")
        described = spec.model_dump(mode="json", exclude=set(NOT_MATCHED) | {"worker_pools"})
        described["head_node_ray_start_script"] = load_script(spec.head_node_ray_start_script, "head")
        if spec.enable_observability:
            described["observability_node_start_script"] = load_script(
                spec.observability_node_start_script, "observability"
            )
        described["worker_pools"] = [
            {
                **pool.model_dump(mode="json", exclude={"worker_node_task_script"}),
                "worker_node_task_script": load_script(pool.worker_node_task_script, "worker"),
            }
            for pool in pools
        ]
        described["platform"] = platform.rstrip("/") if platform else None
        canonical = json.dumps(described, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).hexdigest()[:DIGEST_HEX_DIGITS]
        return cls(spec.reuse_key, digest, spec.cluster_name)

    @property
    def cluster_name(self) -> str:
        """The warm cluster's name: the spec's, shortened if need be, and the digest."""
        room = naming.MAX_CLUSTER_NAME_LENGTH - naming.WARM_SUFFIX_LENGTH
        return f"{self.base_name[:room].rstrip('-_')}-r{self.digest}"

    @property
    def label(self) -> str:
        """The `raydog-reuse` label's value: key and digest, what `raydog list` and the match read."""
        return f"{self.reuse_key}.{self.digest}"

    def matches(self, state: ClusterState) -> bool:
        return state.cluster_name == self.cluster_name and state.labels.get(REUSE_LABEL) == self.label


def is_warm(state: ClusterState) -> bool:
    """Whether a saved state is of a warm cluster: its users leave it, they never shut it down."""
    return REUSE_LABEL in state.labels


@contextmanager
def creation_lock(key: WarmKey, timeout_s: float) -> Iterator[None]:
    """Held while one process finds or builds the warm cluster of `key`: parallel runs wait for it."""
    lock = FileLock(warm_files.lock_file(key.cluster_name), mode=0o600)
    try:
        lock.acquire(timeout=timeout_s)
    except Timeout:
        raise BuildTimeoutError(
            f"another run has been building the warm cluster {key.cluster_name} (reuse_key "
            f"{key.reuse_key!r}) for over {timeout_s:.0f} s (build_timeout): try again, or raise build_timeout"
        ) from None
    try:
        yield
    finally:
        lock.release()


def warm_state(key: WarmKey, backend: Backend) -> ClusterState | None:
    """The state of the live warm cluster of `key`, if its backend lists it running; else None, after
    shutting down and forgetting what is left of a dead one."""
    path = warm_files.state_file(key.cluster_name)
    try:
        state = ClusterState.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, StateError) as error:
        log.warning(
            "the saved state of warm cluster %s is unusable (%s): building anew", key.cluster_name, error
        )
        path.unlink(missing_ok=True)
        return None
    if not key.matches(state) or state.backend != backend.kind or state.lease is None:
        log.warning("the saved state of warm cluster %s is not its own: building anew", key.cluster_name)
        path.unlink(missing_ok=True)
        return None
    record = next((r for r in backend.list_clusters() if r.cluster_id == state.cluster_id), None)
    if record is not None and record.state == "running" and record.labels.get(REUSE_LABEL) == key.label:
        return state
    replace_dead(key, state, backend, "it is no longer running")
    return None


def replace_dead(key: WarmKey, state: ClusterState, backend: Backend, why: str) -> None:
    """Shut down what is left of a warm cluster nobody can attach to (which forgets it too). The warning
    says what the backend knows of its head, so a head that died is told apart from one not answering."""
    log.warning(
        "warm cluster %s (%s) is not usable: %s (%s); replacing it",
        key.cluster_name,
        state.cluster_id,
        why,
        _heads_as_listed(backend, state.cluster_id),
    )
    failures = shut_down_cluster(
        backend, state.cluster_id, [p.pool_id for p in state.pools], f"a warm cluster replaced: {why}"
    )
    if failures:
        log.warning("shutting down the dead warm cluster %s left failures: %s", key.cluster_name, failures)


def _heads_as_listed(backend: Backend, cluster_id: str) -> str:
    try:
        heads = [n for n in backend.list_nodes(cluster_id) if n.role == NodeRole.HEAD]
    except Exception as error:  # noqa: BLE001 - only words for a warning
        return f"its nodes could not be listed: {error}"
    if not heads:
        return "the backend lists no head"
    return "; ".join(
        f"head {n.node_id} {n.status.value}" + (f": {n.detail.strip()[-300:]}" if n.detail.strip() else "")
        for n in heads
    )


def live_record(key: WarmKey, backend: Backend, namespace: str) -> ClusterRecord | None:
    """The running warm cluster of `key` as the backend lists it, whoever built it (on YellowDog, any
    machine with the account: the platform keeps the name unique among live clusters)."""
    return next(
        (
            r
            for r in backend.list_clusters()
            if r.name == key.cluster_name
            and r.namespace == namespace
            and r.state == "running"
            and r.labels.get(REUSE_LABEL) == key.label
        ),
        None,
    )


def state_from_platform(
    record: ClusterRecord, backend: Backend, spec: ClusterSpec, api_url: str | None
) -> ClusterState | None:
    """The state of a live warm cluster built by another machine (none is saved here), from what its
    backend reports: its id, its head's addresses and ports, its pools; the rest follows from this run's
    spec, which matches (the spec's digest is in the cluster's name and label). None while its head is
    not running yet."""
    nodes = [n for n in backend.list_nodes(record.cluster_id) if not n.status.is_final]
    head = next((n for n in nodes if n.role == NodeRole.HEAD and n.status == NodeStatus.RUNNING), None)
    ports = backend.head_ports(record.cluster_id)
    if head is None or head.private_ip is None or ports is None:
        return None
    pools: dict[str, PoolState] = {}
    for node in nodes:
        pool = pools.setdefault(node.pool_id, PoolState(pool_id=node.pool_id, role=node.role.value))
        pool.node_ids.append(node.node_id)
        pool.node_count += 1
    workers = sum(1 for pool in pools.values() if pool.role == "worker")
    return ClusterState(
        backend=backend.kind,
        cluster_id=record.cluster_id,
        cluster_name=record.name,
        cluster_namespace=record.namespace,
        cluster_tag=spec.cluster_tag,
        labels=dict(record.labels),
        phase="running",
        created_at=record.created_at,
        api_url=api_url,
        auth_mode=spec.ray_auth_mode,
        head=head_state(ports, leased=True, node=head),
        lease=leases.terms_for(spec, leased=True),
        next_pool_index=workers + 1,
        pools=list(pools.values()),
        runtime_env=spec.runtime_env,
        worker_preload_modules=spec.worker_preload_modules,
    )
