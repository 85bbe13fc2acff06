"""The worker pools a builder (`RayDogCluster`) keeps track of: the id each was given, the backend's id and
nodes once it is provisioned, and the pools of a saved state adopted as if the builder had added them.

A pool's id is handed out when it is planned, before anything exists, and stays good after a warm
build renamed the cluster; this registry is the one place that knows both names.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from raydog_core import naming
from raydog_core.errors import RayDogError, SpecError
from raydog_core.spec import WorkerPoolSpec
from raydog_core.state import ClusterState, PoolState


@dataclass
class WorkerPool:
    """A worker pool as the builder tracks it: RayDog's id, the backend's id once provisioned."""

    raydog_id: str
    index: int
    spec: WorkerPoolSpec
    backend_id: str | None = None
    node_ids: list[str] = field(default_factory=list)
    where: str = "add_worker_pool"  # how errors name it: "worker_pools.0" for a pool of the spec

    @property
    def internal_name(self) -> str:
        return self.spec.worker_pool_internal_name or self.raydog_id


class WorkerPools:
    """The builder's worker pools by RayDog id, in the order they were added."""

    def __init__(self, planned_name: str) -> None:
        self._planned_name = planned_name  # the cluster's name when its first pool ids were handed out
        self._pools: dict[str, WorkerPool] = {}
        self._next_index = 1
        self._replaced: dict[str, str] = {}  # worker started in place of one that failed -> that one

    @classmethod
    def from_state(cls, state: ClusterState, planned_name: str) -> WorkerPools:
        """The worker pools a saved state names, as if this builder had added them."""
        pools = cls(planned_name)
        for pool_state in state.pools:
            if pool_state.role != "worker":
                continue
            index = pool_index(pool_state.raydog_id, state.cluster_name) or pools._next_index
            pool = WorkerPool(
                raydog_id=pool_state.raydog_id or pool_state.pool_id,
                index=index,
                spec=WorkerPoolSpec(worker_pool_node_count=max(pool_state.node_count, 1)).model_copy(
                    update={"worker_pool_internal_name": pool_state.internal_name}
                ),
                backend_id=pool_state.pool_id,
                node_ids=list(pool_state.node_ids),
            )
            pools._pools[pool.raydog_id] = pool
            pools._next_index = max(pools._next_index, index + 1)
        pools._next_index = max(pools._next_index, state.next_pool_index)
        return pools

    @property
    def planned_name(self) -> str:
        return self._planned_name

    @property
    def next_index(self) -> int:
        return self._next_index

    def __iter__(self) -> Iterator[WorkerPool]:
        return iter(self._pools.values())

    def plan(self, pool_spec: WorkerPoolSpec, where: str, cluster_name: str) -> WorkerPool:
        """A new pool, given its id; nothing is started."""
        name = pool_spec.worker_pool_internal_name
        if name and any(p.internal_name == name for p in self._pools.values()):
            raise SpecError(
                f"{where}.worker_pool_internal_name",
                f"{name!r} is already used by another pool",
                "give every pool its own name",
            )
        if self._next_index > naming.MAX_WORKER_POOLS:
            raise SpecError(where, f"at most {naming.MAX_WORKER_POOLS} pools per cluster")
        raydog_id = cluster_name + naming.worker_pool_suffix(self._next_index)
        pool = WorkerPool(raydog_id=raydog_id, index=self._next_index, spec=pool_spec, where=where)
        self._next_index += 1
        self._pools[raydog_id] = pool
        return pool

    def rename(self, cluster_name: str) -> None:
        """Every pool takes the cluster's new name (a warm cluster's); the ids handed out still find it."""
        pools = list(self._pools.values())
        for pool in pools:
            pool.raydog_id = cluster_name + naming.worker_pool_suffix(pool.index)
        self._pools = {pool.raydog_id: pool for pool in pools}

    def remove(self, pool: WorkerPool) -> None:
        del self._pools[pool.raydog_id]

    def find(self, worker_pool_id: str) -> WorkerPool:
        """The pool by the id add_worker_pool returned (also the one before a warm rename) or the backend's."""
        for pool in self._pools.values():
            planned = self._planned_name + naming.worker_pool_suffix(pool.index)  # before a warm rename
            if worker_pool_id in (pool.raydog_id, pool.backend_id, planned):
                return pool
        raise RayDogError(f"no worker pool with id {worker_pool_id!r}; pools: {sorted(self._pools)}")

    def named(self, internal_name: str) -> WorkerPool:
        for pool in self._pools.values():
            if pool.internal_name == internal_name:
                return pool
        known = sorted(p.internal_name for p in self._pools.values())
        raise RayDogError(f"no worker pool named {internal_name!r}; pools: {known}")

    def holding(self, node_id: str) -> WorkerPool | None:
        """The pool a node belongs to."""
        return next((p for p in self._pools.values() if node_id in p.node_ids), None)

    def node_ids(self) -> set[str]:
        return {n for p in self._pools.values() for n in p.node_ids}

    def node_count(self) -> int:
        return sum(len(p.node_ids) for p in self._pools.values())

    def replace_node(self, pool: WorkerPool, failed_id: str, new_id: str) -> None:
        """`new_id` was started in `pool` in place of `failed_id`, which failed to start."""
        self._replaced[new_id] = failed_id
        pool.node_ids = [new_id if n == failed_id else n for n in pool.node_ids]

    def replaced(self, node_id: str) -> str | None:
        """The node that `node_id` was started in place of, if any."""
        return self._replaced.get(node_id)

    def states(self) -> list[PoolState]:
        """The provisioned pools, as the cluster's state records them."""
        return [
            PoolState(
                pool_id=p.backend_id,
                raydog_id=p.raydog_id,
                role="worker",
                internal_name=p.internal_name,
                node_count=p.spec.worker_pool_node_count,
                node_ids=list(p.node_ids),
            )
            for p in self._pools.values()
            if p.backend_id is not None
        ]


def pool_index(raydog_id: str | None, cluster_name: str) -> int | None:
    """The index in a pool id RayDog gave ("<cluster>-w<n>"); None for any other id."""
    prefix = cluster_name + "-w"
    if raydog_id and raydog_id.startswith(prefix) and raydog_id[len(prefix) :].isdigit():
        return int(raydog_id[len(prefix) :])
    return None
