"""Node pools' worker pools: provisioned, resized when short, and released.

Each node pool runs on a provisioned worker pool of the same name (with its compute requirement), bound
to the pool's task groups by its worker tag. Idle nodes and empty pools shut themselves down, so the
resources of a cluster whose client died go by themselves. Listing a cluster's nodes also tells the pools
the platform cannot fill (`capacity`) from the ones left short of nodes (`starved_pools`), and resizes
the latter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial

from yellowdog_client.model import (
    AutoShutdown,
    ComputeRequirement,
    ComputeRequirementStatus,
    ComputeRequirementTemplateUsage,
    NodeWorkerTarget,
    ProvisionedWorkerPoolProperties,
    Task,
    WorkerPool,
    WorkerPoolSearch,
    WorkerPoolStatus,
    WorkRequirement,
)
from yellowdog_client.model.exceptions import InvalidRequestException

from raydog_core import limits
from raydog_core.backends.base import NodeLaunch, NodeRole
from raydog_core.backends.yellowdog import capacity
from raydog_core.backends.yellowdog import labels as cluster_labels
from raydog_core.backends.yellowdog.api import Api, describe, node_search, present, provisioned
from raydog_core.backends.yellowdog.requirements import Cluster, pool_names
from raydog_core.backends.yellowdog.spend_cap import SpendCap
from raydog_core.backends.yellowdog.starved_pools import WaitingTasks
from raydog_core.errors import RayDogError

log = logging.getLogger("raydog")

# Nodes whose task ended, and empty pools, go away after this: a cluster that ended itself (its head's
# watchdog) is released by it, so it is short; a node idle that long is not needed by the autoscaler.
IDLE_SHUTDOWN = timedelta(seconds=30)
IDLE_SHUTDOWN_ENV = "RAYDOG_YELLOWDOG_IDLE_SHUTDOWN_S"
GONE_POOL = {WorkerPoolStatus.SHUTDOWN, WorkerPoolStatus.TERMINATED}


def idle_shutdown_from_environment() -> timedelta:
    """$RAYDOG_YELLOWDOG_IDLE_SHUTDOWN_S (seconds, at least 1), else IDLE_SHUTDOWN: how long a node
    whose task ended, or an empty pool, is kept for the next task before the platform releases it."""
    seconds = limits.number_from_environment(
        IDLE_SHUTDOWN_ENV, lambda s: 1 <= s <= 24 * 3600, "a number of seconds from 1 to 86400", "e.g. 30"
    )
    return timedelta(seconds=seconds) if seconds is not None else IDLE_SHUTDOWN


class Pools:
    """The worker pools of every cluster this backend reaches, and what it has learnt of them (caches)."""

    def __init__(self, api: Api, idle_shutdown: timedelta) -> None:
        self._api = api
        self.idle_shutdown = idle_shutdown
        self._ids: dict[tuple[str, str], str] = {}  # (namespace, pool name) -> pool id
        self._compute_ids: dict[str, str] = {}  # pool id -> its compute requirement's id (fixed)
        self._short: dict[str, str] = {}  # pool name -> why the platform cannot fill it
        self._waiting = WaitingTasks()  # tasks waiting for a node, to find pools short of nodes

    def provision(self, cluster: Cluster, launch: NodeLaunch, template: str, count: int) -> str:
        options = launch.yellowdog
        usage = ComputeRequirementTemplateUsage(
            templateId=template,
            requirementName=launch.pool_name,
            requirementNamespace=cluster.namespace,
            requirementTag=cap.tag if (cap := SpendCap.from_labels(cluster.labels)) else None,
            targetInstanceCount=count,
            imagesId=options.images_id,
            userData=options.userdata,
            instanceTags=cluster_labels.instance_tags(cluster.name, cluster.labels, options.instance_tags),
        )
        properties = ProvisionedWorkerPoolProperties(
            createNodeWorkers=NodeWorkerTarget.per_node(1),
            minNodes=0,
            maxNodes=max(count, 1) if launch.role != NodeRole.WORKER else None,
            idleNodeShutdown=AutoShutdown(enabled=True, timeout=self.idle_shutdown),
            idlePoolShutdown=AutoShutdown(enabled=True, timeout=self.idle_shutdown),
            workerTag=launch.pool_name,
            metricsEnabled=options.metrics_enabled,
        )
        pools = self._api.client.worker_pool_client

        def provision() -> str:
            pool = self._api.call(
                lambda: pools.provision_worker_pool(usage, properties), "provision worker pool"
            )
            return present(pool.id, "worker pool id")

        try:
            pool_id = provision()
        except InvalidRequestException:
            # The SDK has no "already exists" type: a refusal is a name clash when a live one is there.
            if not self._release_by_name(cluster.namespace, launch.pool_name):
                raise
            log.warning(
                "worker pool %s/%s already existed (an earlier run of this cluster?): shut it down, "
                "provisioning it again",
                cluster.namespace,
                launch.pool_name,
            )
            pool_id = provision()
        self._ids[(cluster.namespace, launch.pool_name)] = pool_id
        return pool_id

    def get(self, pool_id: str) -> WorkerPool:
        pools = self._api.client.worker_pool_client
        return self._api.call(partial(pools.get_worker_pool_by_id, pool_id), "get worker pool")

    def resize(self, pool_id: str, size: int) -> None:
        pools = self._api.client.worker_pool_client
        self._api.call(partial(pools.resize_worker_pool_by_id, pool_id, size), "resize pool")

    def release(self, pool_id: str) -> None:
        """Shut a pool down and terminate its compute requirement (idempotent)."""
        pools = self._api.client.worker_pool_client
        pool = self.get(pool_id)
        if pool.status not in GONE_POOL:
            self._api.call(lambda: pools.shutdown_worker_pool_by_id(pool_id), "shut down worker pool")
        compute_id = provisioned(pool).computeRequirementId
        if compute_id:
            self._compute_ids[pool_id] = compute_id
        self._terminate_compute(compute_id)

    def _terminate_compute(self, compute_id: str | None) -> None:
        if not compute_id:
            return
        if self.compute_requirement(compute_id).status != ComputeRequirementStatus.TERMINATED:
            compute = self._api.client.compute_client
            self._api.call(
                lambda: compute.terminate_compute_requirement_by_id(compute_id),
                "terminate compute requirement",
            )

    def compute_requirement(self, compute_id: str) -> ComputeRequirement:
        compute = self._api.client.compute_client
        return self._api.call(
            partial(compute.get_compute_requirement_by_id, compute_id), "get compute requirement"
        )

    def _release_by_name(self, namespace: str, name: str) -> bool:
        """Release a live pool (or a compute requirement left without one) of this name; False if none."""
        pool = self.by_name(namespace, name)
        if pool is not None and pool.status not in GONE_POOL:
            self.release(present(pool.id, "worker pool id"))
            return True
        compute = self._api.client.compute_client
        existing = self._api.find(
            lambda: compute.get_compute_requirement_by_name(namespace, name), "find compute"
        )
        if existing is None or existing.status == ComputeRequirementStatus.TERMINATED:
            return False
        self._terminate_compute(existing.id)
        return True

    def by_name(self, namespace: str, name: str) -> WorkerPool | None:
        """The pool with exactly this name, or None."""
        pools = self._api.client.worker_pool_client
        pool = self._api.find(lambda: pools.get_worker_pool_by_name(namespace, name), "find worker pool")
        if pool is not None:
            self._ids[(namespace, name)] = present(pool.id, "worker pool id")
        return pool

    def id_of(self, namespace: str, name: str) -> str | None:
        if (namespace, name) not in self._ids:
            self.by_name(namespace, name)
        return self._ids.get((namespace, name))

    def of_cluster(
        self,
        requirement: WorkRequirement | None,
        pool_ids: Sequence[str],
        failures: list[str],
        *,
        fresh: bool = True,
    ) -> list[str]:
        """The ids of the cluster's pools: those given, and those its task groups name (found by name;
        `fresh=False` takes ids this backend already found, as shut_down just did)."""
        pools = dict.fromkeys(pool_ids)
        namespace = requirement.namespace if requirement is not None else ""
        for pool_name in pool_names(requirement) if requirement is not None else []:
            try:
                if fresh:
                    pool = self.by_name(namespace, pool_name)
                    pool_id = present(pool.id, "worker pool id") if pool is not None else None
                else:
                    pool_id = self.id_of(namespace, pool_name)
            except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
                failures.append(f"worker pool {pool_name}: {describe(error)}")
                continue
            if pool_id is not None:
                pools.setdefault(pool_id)
        return list(pools)

    def live_names(self) -> set[tuple[str, str]]:
        """(namespace, name) of every pool the key sees that is not shut down."""
        search = WorkerPoolSearch(statuses=[s for s in WorkerPoolStatus if s not in GONE_POOL])
        pools = self._api.call(
            lambda: self._api.client.worker_pool_client.get_worker_pools(search).list_all(), "list pools"
        )
        return {
            (present(pool.namespace, "worker pool namespace"), present(pool.name, "worker pool name"))
            for pool in pools
        }

    def running_nodes(self, pool_id: str) -> list[str]:
        nodes = self._api.call(
            lambda: self._api.client.worker_pool_client.find_nodes(node_search(pool_id)), "list pool nodes"
        )
        return [
            present(n.id, "node id")
            for n in nodes
            if n.status is not None and n.status.value in ("RUNNING", "LATE")
        ]

    def compute_id(self, pool_id: str) -> str:
        """The pool's compute requirement (fixed for its life): learnt when it was provisioned, else
        asked of the platform once (another process, e.g. one measuring usage after a shut-down)."""
        if pool_id not in self._compute_ids:
            pool = self.get(pool_id)
            self._compute_ids[pool_id] = present(
                provisioned(pool).computeRequirementId, "compute requirement id"
            )
        return self._compute_ids[pool_id]

    def shortage(self, name: str) -> str | None:
        """Why the platform cannot fill the pool of this name, as the last check found (None: it can)."""
        return self._short.get(name)

    def feed_starved(self, namespace: str, tasks: Sequence[Task], pool_of: Callable[[Task], str]) -> None:
        """Resize a pool that expects fewer nodes than it has unfinished tasks, once some of them have
        waited a while (see `starved_pools`: a node lost just before its replacement was added)."""
        by_pool: dict[str, list[Task]] = {}
        for task in self._waiting.long_waiting(tasks):
            name = pool_of(task)
            if name:
                by_pool.setdefault(name, []).append(task)
        for name, waiting in by_pool.items():
            self._waiting.checked(waiting)
            pool_id = self.id_of(namespace, name)
            if pool_id is None or self._short_of_capacity(namespace, name, pool_id):
                continue
            unfinished = sum(
                1 for t in tasks if not (t.status is not None and t.status.finished) and pool_of(t) == name
            )
            self._feed(f"{namespace}/{name}", pool_id, unfinished)

    def _short_of_capacity(self, namespace: str, name: str, pool_id: str) -> bool:
        """Whether the platform cannot fill this pool (`capacity`), remembered for its waiting nodes."""
        try:
            found = self.compute_requirement(self.compute_id(pool_id))
        except (InvalidRequestException, RayDogError) as error:  # the listing goes on; a later one retries
            log.warning("could not check worker pool %s/%s: %s", namespace, name, error)
            return False
        short = capacity.shortage(found)
        if short is None:
            self._short.pop(name, None)
            return False
        self._short[name] = short
        return True

    def _feed(self, name: str, pool_id: str, unfinished: int) -> None:
        try:
            pool = provisioned(self.get(pool_id))
            if pool.status in GONE_POOL or pool.expectedNodeCount >= unfinished:
                return
            log.warning(
                "worker pool %s expects %d node(s) for %d unfinished task(s) (a node was lost?): resizing it",
                name,
                pool.expectedNodeCount,
                unfinished,
            )
            self.resize(pool_id, unfinished)
        except (InvalidRequestException, RayDogError) as error:  # the listing goes on; a later one retries
            log.warning("could not resize worker pool %s: %s", name, error)
