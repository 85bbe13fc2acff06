"""Change a cluster from its saved state, in whatever process holds it: one step at a time.

Orchestrators such as Airflow run each step of a cluster's life in a different task (often a different
process or machine); the builder object does not survive between them, only `ClusterState` does. These
functions re-attach with `RayDogCluster.from_state` and reuse the builder's own launch, wait and
shut-down logic, so a pool added here starts exactly like one added to a live builder.

Every function takes the `Backend` to use (built by the caller from its credentials) and returns the
new state; none keeps anything between calls.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from raydog_core import auth
from raydog_core.backends import Backend, NodeInfo
from raydog_core.cluster import RayDogCluster
from raydog_core.errors import BuildTimeoutError, RayDogError
from raydog_core.lifecycle import ClusterSession, HeadProbe
from raydog_core.proxy import RayDogClusterProxy
from raydog_core.spec import WorkerPoolSpec, build_model
from raydog_core.state import ClusterState

log = logging.getLogger("raydog")

StateLike = ClusterState | str | Mapping[str, Any]


def load_state(state: StateLike) -> ClusterState:
    """A private copy of the state, whatever form it came in (model, JSON text, XCom dict)."""
    if isinstance(state, ClusterState):
        return state.model_copy(deep=True)
    return ClusterState.from_json(dict(state) if isinstance(state, Mapping) else state)


def head_probe(state: StateLike, backend: Backend) -> HeadProbe:
    """Watches the head of a cluster being built, by the same rule as `build()`: keep one per wait, and
    call `look()` until it returns the head (None meanwhile; NodeFailedError when its script exited)."""
    state = load_state(state)
    if state.head.node_id is None:
        raise RayDogError(f"cluster {state.cluster_name} has no head node yet: it was never launched")
    return HeadProbe(ClusterSession.from_state(state, backend), state.head.node_id)


def head_node_if_ready(state: StateLike, backend: Backend, probe: HeadProbe | None = None) -> NodeInfo | None:
    """One look at the head of a cluster being built: the node once it is ready for workers, else None.

    Pass the same `probe` (from `head_probe`) to every look of one wait: a head without a dashboard is
    trusted only a while after its GCS opened, which a fresh probe cannot know.
    """
    return (probe or head_probe(state, backend)).look()


def finish_build(
    state: StateLike,
    head_private_ip: str,
    head_public_ip: str | None,
    worker_pools: Sequence[WorkerPoolSpec | Mapping[str, Any]],
    backend: Backend,
    *,
    wait_for_workers: bool = True,
    timeout: float = 600.0,
) -> ClusterState:
    """Complete `build(wait_for_head=False)` once the head is up: start the worker pools, wait for them.

    On any failure the whole cluster is shut down (as `build()` does) before the error is raised.
    """
    state = load_state(state)
    state.head.private_ip = head_private_ip
    state.head.public_ip = head_public_ip
    state.phase = "running"
    cluster = RayDogCluster.from_state(state, backend=backend)
    try:
        for pool in worker_pools:
            cluster.add_worker_pool(**_pool_fields(pool))
        if wait_for_workers:
            cluster.wait_for_nodes(timeout=timeout)
    except BaseException:
        log.error("build of cluster %s failed after its head came up; shutting it down", state.cluster_name)
        _shut_down_quietly(cluster)
        raise
    return cluster.state


def all_nodes_joined(state: StateLike, backend: Backend) -> bool:
    """One look: has every node of the state joined Ray? NodeFailedError when a node's script exited
    (no replacement: it would live only in this look's copy of the state)."""
    cluster = RayDogCluster.from_state(load_state(state), backend=backend)
    try:
        cluster.wait_for_nodes(timeout=0, replace_failed=False)
    except BuildTimeoutError:
        return False
    return True


def add_worker_pool(
    state: StateLike,
    pool: WorkerPoolSpec | Mapping[str, Any],
    backend: Backend,
    *,
    wait_for_workers: bool = True,
    timeout: float = 600.0,
) -> tuple[ClusterState, str]:
    """Start one more pool of workers; returns (new state, pool id). A pool that never joins is removed."""
    cluster = RayDogCluster.from_state(load_state(state), backend=backend)
    pool_id = cluster.add_worker_pool(**_pool_fields(pool))
    if wait_for_workers:
        try:
            cluster.wait_for_nodes(timeout=timeout)
        except BaseException:
            log.error(
                "worker pool %s of cluster %s did not join; removing it", pool_id, cluster.spec.cluster_name
            )
            try:
                cluster.remove_worker_pool(pool_id)
            except Exception:
                log.exception("removing the failed pool %s reported errors", pool_id)
            raise
    return cluster.state, pool_id


def remove_worker_pool(state: StateLike, pool: str, backend: Backend) -> ClusterState:
    """Remove a pool by its id (RayDog's or the backend's) or its internal name; returns the new state."""
    cluster = RayDogCluster.from_state(load_state(state), backend=backend)
    if pool in cluster.worker_pool_internal_names:
        cluster.remove_worker_pool_by_internal_name(pool)
    else:
        cluster.remove_worker_pool(pool)
    return cluster.state


def is_alive(state: StateLike, backend: Backend) -> bool:
    """Does anything of this cluster still exist (a node not yet finished, or the cluster still open)?"""
    state = load_state(state)
    if any(not node.status.is_final for node in backend.list_nodes(state.cluster_id)):
        return True
    return any(
        r.cluster_id == state.cluster_id and r.state in ("running", "ending") for r in backend.list_clusters()
    )


def shut_down(state: StateLike, backend: Backend) -> ClusterState | None:
    """Shut the cluster down if anything of it is alive; returns its state after shut-down (with what it
    used, `usage`, where that could be measured), or None if it was already down.

    Idempotent, so a teardown task and a failure callback can both call it: the second one does nothing.
    """
    state = load_state(state)
    if not is_alive(state, backend):
        auth.delete_token(state.cluster_id)
        log.info("cluster %s (%s) is already shut down: nothing to do", state.cluster_name, state.cluster_id)
        return None
    proxy = RayDogClusterProxy(backend=backend)
    proxy.load_saved_state_from_json(state.to_json())
    proxy.shut_down()
    return proxy.state


def _pool_fields(pool: WorkerPoolSpec | Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(pool, WorkerPoolSpec):
        pool = build_model(WorkerPoolSpec, dict(pool), "worker_pool")
    return pool.model_dump(exclude_unset=True)


def _shut_down_quietly(cluster: RayDogCluster) -> None:
    try:
        cluster.shut_down()
    except Exception:
        log.exception("clean-up of cluster %s reported errors", cluster.spec.cluster_name)
