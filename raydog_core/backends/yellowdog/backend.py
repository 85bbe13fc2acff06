"""YellowDogBackend: Ray nodes as YellowDog tasks on provisioned worker pools.

A cluster is one work requirement (WR), named after the cluster. Each node pool (head, observability,
every worker pool) is a task group in that WR plus a provisioned worker pool of the same name, bound to
the group by its worker tag; each Ray node is one `bash` task whose task data is the node script. A
node's id is its task's name, known before the task exists, so a node script gets it as RAYDOG_NODE_ID.

Nothing here stores state of its own beyond caches: any process with the cluster id (the WR id) and an
application key can list, grow, shrink and shut the cluster down. Resources stop by themselves when the
client dies: tasks time out at the cluster lifetime and idle nodes and pools shut down.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import requests
from yellowdog_client.compute import ComputeClient
from yellowdog_client.model import (
    AutoShutdown,
    ComputeRequirementStatus,
    ComputeRequirementTemplate,
    ComputeRequirementTemplateUsage,
    Instance,
    InstanceSearch,
    NodeWorkerTarget,
    ProvisionedWorkerPool,
    ProvisionedWorkerPoolProperties,
    RetryPolicy,
    RunSpecification,
    Selection,
    Task,
    TaskErrorSelector,
    TaskErrorType,
    TaskGroup,
    TaskSearch,
    TaskStatus,
    WorkerPool,
    WorkerPoolSearch,
    WorkerPoolStatus,
    WorkRequirement,
    WorkRequirementSearch,
    WorkRequirementStatus,
)
from yellowdog_client.model.exceptions import InvalidRequestException, NotAuthorisedException

from raydog_core import limits, naming, node_env, processes
from raydog_core.backends.base import (
    ClusterHandle,
    ClusterOptions,
    ClusterRecord,
    HeadPorts,
    NodeEnd,
    NodeInfo,
    NodeLaunch,
    NodeRole,
    NodeStatus,
    ObservabilityPorts,
    PoolPlan,
    lifetime_left,
)
from raydog_core.backends.yellowdog import capacity, quotes, spend_cap, task_outputs
from raydog_core.backends.yellowdog import labels as cluster_labels
from raydog_core.backends.yellowdog import placement as node_placement
from raydog_core.backends.yellowdog.client import create_client
from raydog_core.backends.yellowdog.node_status import node_status
from raydog_core.backends.yellowdog.retry import with_retry
from raydog_core.backends.yellowdog.spend_cap import SpendCap
from raydog_core.backends.yellowdog.starved_pools import WaitingTasks
from raydog_core.backends.yellowdog.task_outputs import TaskOutputStore
from raydog_core.credentials import YellowDogCredentials
from raydog_core.errors import ClusterNameTakenError, PoolGoneError, RayDogError, SpecError, SpendCapError
from raydog_core.pricing import ClusterUsage, PlanQuote, PoolQuote, SpendStatus
from raydog_core.spec import NodePlacement

if TYPE_CHECKING:
    from raydog_core.postmortem import LogBudget

log = logging.getLogger("raydog")
T = TypeVar("T")

TASK_TYPE = "bash"
TASK_ARGUMENTS = ["taskdata.txt"]  # the agent writes the task data to this file
# Nodes whose task ended, and empty pools, go away after this: a cluster that ended itself (its head's
# watchdog) is released by it, so it is short; a node idle that long is not needed by the autoscaler.
IDLE_SHUTDOWN = timedelta(seconds=30)
# At shut-down with a task output store: how long the pools wait for cancelled tasks to end (and their
# agents to upload the nodes' output) before they are released.
UPLOAD_WAIT = timedelta(seconds=60)
# A node whose machine went away under it (a spot instance reclaimed, a crash: ALLOCATION_LOST) is started
# again by the platform, on another node of its pool; a script that fails (any other error) is not.
LOST_NODE_RETRY = RetryPolicy(
    maxRetries=3,
    retryErrors=Selection(
        includes=[TaskErrorSelector(errorTypes=Selection(includes=[TaskErrorType.ALLOCATION_LOST]))]
    ),
)
DEFAULT_LIFETIME = timedelta(hours=24)  # when no cluster_lifetime is given: nothing runs for ever
LIVE_REQUIREMENT = [
    WorkRequirementStatus.RUNNING,
    WorkRequirementStatus.HELD,
    WorkRequirementStatus.FINISHING,
    WorkRequirementStatus.CANCELLING,
]
GONE_POOL = {WorkerPoolStatus.SHUTDOWN, WorkerPoolStatus.TERMINATED}
TEMPLATE_FIELD = {
    NodeRole.HEAD: "head_node_compute_requirement_template_id",
    NodeRole.OBSERVABILITY: "observability_node_compute_requirement_template_id",
    NodeRole.WORKER: "worker_node_compute_requirement_template_id",
}


@dataclass(frozen=True)
class _Cluster:
    """What the backend needs to know of a cluster, read once from its work requirement."""

    namespace: str
    name: str
    labels: dict[str, str]
    ends_at: datetime  # creation + cluster lifetime: tasks started later get what is left of it


@dataclass(frozen=True)
class _Group:
    pool_name: str  # = the worker tag
    role: NodeRole | None


class YellowDogBackend:
    """See the module docstring. `placement` says where nodes run (`placement.py`): by default each on a
    machine of its own, whose private IP the client cannot reach, so the builder trusts task status
    instead of probing Ray's ports; `shared_host` when every instance is a process on this host."""

    kind = "yellowdog"

    def __init__(
        self,
        credentials: YellowDogCredentials,
        *,
        placement: NodePlacement | str | None = None,
        idle_shutdown: timedelta | None = None,
        task_output_url: str | None = None,
    ) -> None:
        """`task_output_url`: where the platform uploads each node task's output when it ends (else
        `$RAYDOG_YELLOWDOG_TASK_OUTPUT_URL`; none: nothing is uploaded). See `task_outputs`."""
        self._credentials = credentials
        self._outputs = (
            TaskOutputStore(task_output_url.rstrip("/"))
            if task_output_url
            else task_outputs.store_from_environment()
        )
        self._failure_tails: dict[str, str] = {}  # failed node -> the tail of its uploaded output
        self._tail_reads: dict[str, int] = {}  # failed node -> looks in the store that found nothing
        self._short_pools: dict[str, str] = {}  # pool name -> why the platform cannot fill it
        self._client = create_client(credentials)
        self.api_url = credentials.api_url
        self.placement = node_placement.resolve_placement(placement)
        self.capabilities = node_placement.capabilities(self.placement)
        self.idle_shutdown = idle_shutdown or _idle_shutdown_from_environment()
        self._requirement_lock = threading.Lock()  # read-modify-write of a work requirement
        self._clusters: dict[str, _Cluster] = {}
        self._groups: dict[str, _Group] = {}  # task group id -> pool
        self._pool_ids: dict[tuple[str, str], str] = {}  # (namespace, pool name) -> pool id
        self._waiting = WaitingTasks()  # tasks waiting for a node, to find pools short of nodes
        self._compute_ids: dict[str, str] = {}  # pool id -> its compute requirement's id (fixed)
        self._addresses: dict[str, tuple[str | None, str | None, str | None]] = {}  # node id -> ips, pool id
        self._templates: dict[str, ComputeRequirementTemplate] = {}  # checked, by the spec's reference
        self._machines: dict[str, list[tuple[str, quotes.Machine]]] = {}  # their sources, by the same
        self._head_ports: dict[str, HeadPorts] = {}
        self._observability_ports: dict[str, ObservabilityPorts] = {}

    def __repr__(self) -> str:
        return (
            f"YellowDogBackend(api_url={self.api_url!r}, key_id={self._credentials.key_id!r}, "
            f"placement={self.placement.value!r})"
        )

    # -- clusters -----------------------------------------------------------------------------------

    def check_plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> None:
        """Every pool's template exists for this key (which checks the key too), before anything exists:
        each node's machine comes from its compute requirement template. The head's may not give spot
        instances unless the spec allows it: a reclaimed head ends the whole cluster."""
        for pool in pools:
            ref = self._check_template(pool.yellowdog.compute_requirement_template_id, _template_field(pool))
            if pool.role == NodeRole.HEAD and not options.head_on_spot_allowed:
                self._refuse_spot(ref, _template_field(pool))

    def _refuse_spot(self, ref: str, field: str) -> None:
        machines = self._template_machines(ref)
        if any(machine.spot for _, machine in machines):
            kind = quotes.capacity_of([m.spot for _, m in machines], self._templates[ref].strategyType)
            raise SpecError(
                field,
                f"template {ref!r} gives {kind} instances: a reclaimed head ends the whole cluster "
                "(a lost worker is started again)",
                "give the head an on-demand template, or set head_node_allow_spot=True to accept it",
            )

    def _template_machines(self, ref: str) -> list[tuple[str, quotes.Machine]]:
        """The machines of a checked template's sources, asked of the platform once per template."""
        if ref not in self._machines:
            self._machines[ref] = quotes.source_machines(self._client, self._call, self._templates[ref])
        return self._machines[ref]

    def plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> PlanQuote:
        """check_plan, then each pool priced from its template's sources and the platform's price list,
        and the allowances that would cover the cluster."""
        self.check_plan(options, pools)
        by_template: dict[str, quotes.TemplateQuote] = {}
        prices = quotes.PriceList(self._client, self._call)
        for pool in pools:
            ref = _present(pool.yellowdog.compute_requirement_template_id, "template")
            if ref not in by_template:
                by_template[ref] = quotes.quote_template(
                    prices, ref, self._templates[ref], self._template_machines(ref)
                )
        planned = [
            quotes.PlannedPool(
                p.count, by_template[_present(p.yellowdog.compute_requirement_template_id, "template")]
            )
            for p in pools
        ]
        pool_quotes = [
            PoolQuote(
                p.pool, p.role.value, p.count, p.resources, q.quote.machine, q.quote.price, q.quote.capacity
            )
            for p, q in zip(pools, planned, strict=True)
        ]
        warnings = [
            f"no price for {q.template_ref} ({q.machine}): the cost is unknown"
            for q in by_template.values()
            if q.price is None
        ]
        currencies = {q.currency for q in by_template.values() if q.currency}
        if len(currencies) > 1:
            warnings.append(
                f"templates are priced in several currencies ({sorted(currencies)}): totals mix them"
            )
        headroom, more = quotes.allowance_headroom(self._client, self._call, options.namespace, planned)
        return PlanQuote(
            pool_quotes,
            currency=min(currencies) if currencies else None,
            lifetime=options.lifetime or DEFAULT_LIFETIME,
            allowances=headroom,
            warnings=warnings + more,
        )

    def open_cluster(self, options: ClusterOptions) -> ClusterHandle:
        naming.check_name("cluster_name", options.name, naming.MAX_CLUSTER_NAME_LENGTH)
        naming.check_name("cluster_namespace", options.namespace)
        requirement = WorkRequirement(
            namespace=options.namespace, name=options.name, tag=options.tag, taskGroups=[]
        )
        labels = dict(options.labels)
        cap = None
        if options.max_node_hours is not None:
            cap = spend_cap.create(
                self._client, self._call, options.namespace, options.name, options.max_node_hours
            )
            labels.update(cap.labels())
        try:
            cluster_id = _present(self._add_requirement(requirement).id, "work requirement id")
        except BaseException:
            if cap is not None:
                spend_cap.delete(self._client, self._call, cap)
            raise
        lifetime = options.lifetime or DEFAULT_LIFETIME
        if options.lifetime is None:
            log.info(
                "cluster %s has no cluster_lifetime: its nodes stop after %s at the latest",
                options.name,
                lifetime,
            )
        labels.update(node_placement.head_ports_label(self.placement, self._ports(cluster_id)))
        self._clusters[cluster_id] = _Cluster(
            options.namespace, options.name, labels, datetime.now(UTC) + lifetime
        )
        return ClusterHandle(
            cluster_id, self._ports(cluster_id), log_dir=None, observability=self._obs_ports(cluster_id)
        )

    def list_clusters(self) -> list[ClusterRecord]:
        """Clusters with a live work requirement, and finished ones still holding a live pool.

        A cluster whose head task failed has a finished work requirement while its pools live on until
        their idle shutdown; listing it lets `ray down` and `raydog reap` release them now. Only the
        finished requirements whose name starts a live pool's name are read, not every old one.
        """
        records = []
        live_pools = self._live_pool_names()
        summaries = self._call(
            lambda: self._client.work_client.get_work_requirements(WorkRequirementSearch()).list_all(),
            "list clusters",
        )
        for summary in summaries:
            live = summary.status in LIVE_REQUIREMENT
            if not live and not any(
                ns == summary.namespace and name.startswith(_present(summary.name, "work requirement name"))
                for ns, name in live_pools
            ):
                continue
            cluster_id = _present(summary.id, "work requirement id")
            requirement = self._get_requirement(cluster_id)
            if self._labels_of(requirement) is None:
                continue
            if (
                not live
                and not {(requirement.namespace, n) for n in self._pool_names(requirement)} & live_pools
            ):
                continue
            labels = self._labels_of(requirement) or {}
            nodes = sum(
                count
                for group in requirement.taskGroups or []
                for status, count in ((group.taskSummary and group.taskSummary.statusCounts) or {}).items()
                if status.in_progress
            )
            records.append(
                ClusterRecord(
                    cluster_id=cluster_id,
                    name=_present(requirement.name, "work requirement name"),
                    namespace=_present(requirement.namespace, "work requirement namespace"),
                    backend=self.kind,
                    labels={k: v for k, v in labels.items() if k != node_placement.HEAD_PORTS_LABEL},
                    created_at=requirement.createdTime or datetime.now(UTC),
                    live_nodes=nodes,
                    state="running" if live else "ending",
                )
            )
        return records

    def _live_pool_names(self) -> set[tuple[str, str]]:
        search = WorkerPoolSearch(statuses=[s for s in WorkerPoolStatus if s not in GONE_POOL])
        pools = self._call(
            lambda: self._client.worker_pool_client.get_worker_pools(search).list_all(), "list pools"
        )
        return {
            (_present(pool.namespace, "worker pool namespace"), _present(pool.name, "worker pool name"))
            for pool in pools
        }

    def live_resources(self) -> list[str]:
        """Live work requirements, pools and compute requirements of every RayDog cluster the key sees,
        and RayDog's spend cap allowances."""
        leaks = spend_cap.live_caps(self._client, self._call)
        for requirement in self._raydog_requirements(None):
            where = f"{requirement.namespace}/{requirement.name}"
            status = _present(requirement.status, "work requirement status")
            if not status.finished:
                leaks.append(f"work requirement {where} ({status.value})")
            for pool_name in self._pool_names(requirement):
                pool = self._pool_by_name(requirement.namespace, pool_name)
                if pool is None:
                    continue
                pool_status = _present(pool.status, "worker pool status")
                if pool_status not in GONE_POOL:
                    leaks.append(f"worker pool {requirement.namespace}/{pool_name} ({pool_status.value})")
                compute = self._call(
                    partial(
                        self._client.compute_client.get_compute_requirement_by_id,
                        _present(_provisioned(pool).computeRequirementId, "compute requirement id"),
                    ),
                    "get compute requirement",
                )
                compute_status = _present(compute.status, "compute requirement status")
                if compute_status != ComputeRequirementStatus.TERMINATED:
                    leaks.append(
                        f"compute requirement {requirement.namespace}/{compute.name} ({compute_status.value})"
                    )
        return leaks

    def shut_down(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> list[str]:
        failures: list[str] = []
        try:
            requirement = self._get_requirement(cluster_id)
        except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
            failures.append(f"work requirement {cluster_id}: {_describe(error)}")
            requirement = None
        if requirement is not None:
            self._cancel_requirement(requirement, failures)
            self._await_uploads(cluster_id)
        for pool_id in self._cluster_pools(requirement, pool_ids, failures):
            try:
                self._release_pool(pool_id)
            except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
                failures.append(f"worker pool {pool_id}: {_describe(error)}")
        cap = SpendCap.from_labels(self._labels_of(requirement) or {}) if requirement is not None else None
        if cap is not None:
            try:
                spend_cap.delete(self._client, self._call, cap)
            except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
                failures.append(f"spend cap allowance {cap.allowance_id}: {_describe(error)}")
        node_placement.remove_node_files(self.placement, cluster_id)
        return failures

    def usage(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> ClusterUsage:
        """Instance-hours of every pool of the cluster, from the platform's instance records (creation to
        termination), priced from its price list: a few calls per pool, whatever its node count."""
        failures: list[str] = []
        pools = self._cluster_pools(self._get_requirement(cluster_id), pool_ids, failures, fresh=False)
        if failures:
            raise RayDogError("cannot measure the cluster's usage: " + "; ".join(failures))
        instances: list[Instance] = []
        compute = self._client.compute_client
        for pool_id in pools:
            search = InstanceSearch(computeRequirementId=self._compute_id(pool_id))
            instances += self._call(partial(_all_instances, compute, search), "list instances")
        hours, cost, currency = quotes.instance_usage(
            instances, quotes.PriceList(self._client, self._call), datetime.now(UTC)
        )
        return ClusterUsage(node_hours=hours, cost=cost, currency=currency)

    def spend(self, cluster_id: str) -> SpendStatus | None:
        """Used node-hours against the cap, from the cap's allowance (one call)."""
        cap = SpendCap.from_labels(self._cluster(cluster_id).labels)
        if cap is None:
            return None
        remaining = spend_cap.remaining_hours(self._client, self._call, cap)
        return SpendStatus(used_hours=max(cap.hours - remaining, 0.0), cap_hours=cap.hours)

    def _cluster_pools(
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
        for pool_name in self._pool_names(requirement) if requirement is not None else []:
            try:
                if fresh:
                    pool = self._pool_by_name(namespace, pool_name)
                    pool_id = _present(pool.id, "worker pool id") if pool is not None else None
                else:
                    pool_id = self._pool_id(namespace, pool_name)
            except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
                failures.append(f"worker pool {pool_name}: {_describe(error)}")
                continue
            if pool_id is not None:
                pools.setdefault(pool_id)
        return list(pools)

    def close(self) -> None:
        self._client.close()

    # -- pools and nodes ----------------------------------------------------------------------------

    def create_pool(self, cluster_id: str, launch: NodeLaunch, count: int) -> tuple[str, list[str]]:
        cluster = self._cluster(cluster_id)
        self._refuse_over_cap(cluster)
        pool_name = naming.check_name("pool name", launch.pool_name)
        template = self._check_template(
            launch.yellowdog.compute_requirement_template_id, TEMPLATE_FIELD[launch.role]
        )
        # A pool of this name may have been here before (shut down idle): its groups keep their names.
        groups = self._get_requirement(cluster_id).taskGroups or []
        earlier = [g for g in groups if _worker_tag(g) == pool_name]
        group = self._append_group(cluster_id, cluster, pool_name, launch, len(earlier) + 1)
        pool_id = self._provision_pool(cluster, launch, template, count)
        try:
            node_ids = self._add_tasks(cluster_id, group, launch, count)
        except BaseException:
            self._release_pool(pool_id)
            raise
        return pool_id, node_ids

    def add_nodes(self, cluster_id: str, pool_id: str, launch: NodeLaunch, count: int) -> list[str]:
        cluster = self._cluster(cluster_id)
        self._refuse_over_cap(cluster)
        pool = self._call(
            lambda: self._client.worker_pool_client.get_worker_pool_by_id(pool_id), "get worker pool"
        )
        pool_status = _present(pool.status, "worker pool status")
        pool_name = _present(pool.name, "worker pool name")
        if pool_status in GONE_POOL:
            raise PoolGoneError(f"worker pool {pool_name} is {pool_status.value}: create a new pool instead")
        groups = [
            g for g in self._get_requirement(cluster_id).taskGroups or [] if _worker_tag(g) == pool_name
        ]
        live = [g for g in groups if not _present(g.status, "task group status").terminated]
        group = (
            live[-1] if live else self._append_group(cluster_id, cluster, pool_name, launch, len(groups) + 1)
        )
        # Nodes whose task was cancelled idle until their idle shutdown and take new tasks meanwhile: size
        # the pool for the tasks that need a node (unfinished ones plus the new), never below what runs.
        current = len(self._pool_nodes(pool_id))
        size = max(current, self._unfinished_tasks(cluster_id, live) + count)
        if size != current:
            self._call(
                lambda: self._client.worker_pool_client.resize_worker_pool_by_id(pool_id, size), "resize pool"
            )
        try:
            return self._add_tasks(cluster_id, group, launch, count)
        except InvalidRequestException:  # the group finished meanwhile: the next generation takes the tasks
            group = self._append_group(cluster_id, cluster, pool_name, launch, len(groups) + 2)
            return self._add_tasks(cluster_id, group, launch, count)

    def list_nodes(self, cluster_id: str) -> list[NodeInfo]:
        tasks = self._call(
            lambda: self._client.work_client.get_tasks(TaskSearch(workRequirementId=cluster_id)).list_all(),
            "list tasks",
        )
        if any(t.taskGroupId not in self._groups for t in tasks):
            self._learn_groups(self._get_requirement(cluster_id))
        cluster = self._cluster(cluster_id)
        namespace = cluster.namespace
        self._feed_starved_pools(namespace, tasks)
        self._learn_addresses(namespace, tasks)
        capped = self._cap_note(cluster, tasks)
        nodes = []
        for task in tasks:
            group = self._groups.get(_present(task.taskGroupId, "task group id"), _Group("", None))
            status, detail = node_status(task)
            last_error = task.errors[-1].errorType if task.errors else None
            ended_by = (
                NodeEnd.MACHINE_LOST
                if status == NodeStatus.FAILED and last_error == "ALLOCATION_LOST"
                else None
            )
            if capped and _lost(task):
                detail = f"{detail}; {capped}"
                ended_by = NodeEnd.SPEND_CAP
            if status == NodeStatus.FAILED and task.name:
                detail += self._output_tail(cluster_id, task.name)
            short = self._short_pools.get(group.pool_name) if task.status and task.status.waiting else None
            private_ip = public_ip = None
            pool_id = self._pool_id(namespace, group.pool_name) if group.pool_name else None
            if status == NodeStatus.RUNNING and task.nodeId:
                private_ip, public_ip, pool_id = self._node_addresses(task.nodeId)
            nodes.append(
                NodeInfo(
                    node_id=_present(task.name, "task name"),
                    pool_id=pool_id or "",
                    role=NodeRole(task.tag)
                    if task.tag is not None and task.tag in NodeRole._value2member_map_
                    else (group.role or NodeRole.WORKER),
                    status=status,
                    private_ip=private_ip,
                    public_ip=public_ip,
                    detail=detail,
                    ended_by=ended_by,
                    blocked_by=f"the platform has no capacity for pool {group.pool_name}: {short}"
                    if short
                    else "",
                    started_at=task.startedTime,
                    ended_at=task.finishedTime if status.is_final else None,
                )
            )
        return nodes

    def _feed_starved_pools(self, namespace: str, tasks: Sequence[Task]) -> None:
        """Resize a pool that expects fewer nodes than it has unfinished tasks, once some of them have
        waited a while (see `starved_pools`: a node lost just before its replacement was added)."""
        by_pool: dict[str, list[Task]] = {}
        for task in self._waiting.long_waiting(tasks):
            name = self._groups.get(task.taskGroupId or "", _Group("", None)).pool_name
            if name:
                by_pool.setdefault(name, []).append(task)
        for name, waiting in by_pool.items():
            self._waiting.checked(waiting)
            pool_id = self._pool_id(namespace, name)
            if pool_id is None or self._short_of_capacity(namespace, name, pool_id):
                continue
            unfinished = sum(
                1
                for t in tasks
                if not (t.status is not None and t.status.finished)
                and self._groups.get(t.taskGroupId or "", _Group("", None)).pool_name == name
            )
            self._feed_pool(f"{namespace}/{name}", pool_id, unfinished)

    def _short_of_capacity(self, namespace: str, name: str, pool_id: str) -> bool:
        """Whether the platform cannot fill this pool (`capacity`), remembered for its waiting nodes."""
        try:
            compute = self._call(
                partial(self._client.compute_client.get_compute_requirement_by_id, self._compute_id(pool_id)),
                "get compute requirement",
            )
        except (InvalidRequestException, RayDogError) as error:  # the listing goes on; a later one retries
            log.warning("could not check worker pool %s/%s: %s", namespace, name, error)
            return False
        short = capacity.shortage(compute)
        if short is None:
            self._short_pools.pop(name, None)
            return False
        self._short_pools[name] = short
        return True

    def _compute_id(self, pool_id: str) -> str:
        """The pool's compute requirement (fixed for its life): learnt when it was provisioned, else
        asked of the platform once (another process, e.g. one measuring usage after a shut-down)."""
        if pool_id not in self._compute_ids:
            pool = self._call(
                partial(self._client.worker_pool_client.get_worker_pool_by_id, pool_id), "get worker pool"
            )
            self._compute_ids[pool_id] = _present(
                _provisioned(pool).computeRequirementId, "compute requirement id"
            )
        return self._compute_ids[pool_id]

    def _feed_pool(self, name: str, pool_id: str, unfinished: int) -> None:
        pools = self._client.worker_pool_client
        try:
            pool = _provisioned(self._call(partial(pools.get_worker_pool_by_id, pool_id), "get worker pool"))
            if pool.status in GONE_POOL or pool.expectedNodeCount >= unfinished:
                return
            log.warning(
                "worker pool %s expects %d node(s) for %d unfinished task(s) (a node was lost?): resizing it",
                name,
                pool.expectedNodeCount,
                unfinished,
            )
            self._call(partial(pools.resize_worker_pool_by_id, pool_id, unfinished), "resize pool")
        except (InvalidRequestException, RayDogError) as error:  # the listing goes on; a later one retries
            log.warning("could not resize worker pool %s: %s", name, error)

    def terminate_nodes(self, cluster_id: str, node_ids: Sequence[str]) -> None:
        wanted = set(node_ids)
        tasks = self._call(
            lambda: self._client.work_client.get_tasks(TaskSearch(workRequirementId=cluster_id)).list_all(),
            "list tasks",
        )
        self._cancel_tasks([t for t in tasks if t.name in wanted])

    def remove_pool(self, cluster_id: str, pool_id: str) -> None:
        self._cancel_tasks(self._pool_tasks(cluster_id, pool_id))
        self._release_pool(pool_id)

    def write_node_logs(self, cluster_id: str, into: Path, logs: LogBudget) -> None:
        """What the API reports of each node's task (status, errors, retries after a lost machine), and
        what the platform uploaded of each node's own output (`task_outputs`): its script's output as
        `<node>.log`, its Ray log tails under `<node>/`. A node still running has uploaded nothing yet."""
        for node in self.list_nodes(cluster_id):
            text = f"{node.role.value} {node.node_id} in pool {node.pool_id}: {node.status.value}\n"
            logs.write_text(
                into / "logs" / f"{node.node_id}.txt", text + (node.detail + "\n" if node.detail else "")
            )
            if self._outputs is None:
                continue
            for name, data in self._outputs.node_log_files(cluster_id, node.node_id).items():
                target = (
                    f"{node.node_id}.log" if name == task_outputs.TASK_OUTPUT else f"{node.node_id}/{name}"
                )
                logs.write_bytes_tail(into / "logs" / target, data)

    def node_log_tail(self, cluster_id: str, node_id: str, lines: int = 20) -> str:
        """The task's errors as the API reports them, with the tail of its uploaded output if any."""
        return next((n.detail for n in self.list_nodes(cluster_id) if n.node_id == node_id), "")

    def _output_tail(self, cluster_id: str, node: str, lines: int = 20) -> str:
        """The last lines a failed node's script wrote, once the platform has uploaded them."""
        if self._outputs is None:
            return ""
        if node not in self._failure_tails:
            data = self._outputs.read_tail(cluster_id, node, 8192)
            if data is None:  # not uploaded (yet), or never (a lost machine): looked for three times
                self._tail_reads[node] = self._tail_reads.get(node, 0) + 1
                if self._tail_reads[node] < 3:
                    return ""
                data = b""
            tail = "\n".join(data.decode(errors="replace").splitlines()[-lines:])
            self._failure_tails[node] = f"; last lines of its output:\n{tail}" if tail else ""
        return self._failure_tails[node]

    # -- work requirement ---------------------------------------------------------------------------

    def _add_requirement(self, requirement: WorkRequirement) -> WorkRequirement:
        """Create the work requirement. A running one of the same name is never replaced, whoever made it
        (another process, flow run or DAG run may be using it): the build is refused with the way out.
        One that has finished does not stand in the way.
        """
        work = self._client.work_client
        try:
            return self._call(lambda: work.add_work_requirement(requirement), "create work requirement")
        except InvalidRequestException:
            # The SDK has no "already exists" type: a refusal is a name clash when a live one is there.
            earlier = self._live_requirement_by_name(requirement.namespace, requirement.name)
            if earlier is None:
                raise
        theirs = _run_identity(self._labels_of(earlier) or {})
        raise ClusterNameTakenError(
            f"cluster_name {requirement.name!r} is in use in namespace {requirement.namespace} by a running "
            f"cluster (labels {theirs or 'none'}) that this client did not create: give concurrent runs "
            f"their own cluster_name, or shut that one down if nobody uses it "
            f"(raydog reap --name {requirement.name}, or raydog down with its state)"
        )

    def _live_requirement_by_name(self, namespace: str, name: str) -> WorkRequirement | None:
        work = self._client.work_client
        found = self._find(
            lambda: work.get_work_requirement_by_name(namespace, name), "find work requirement"
        )
        return None if found is None or _finished(found) else found

    def _append_group(
        self, cluster_id: str, cluster: _Cluster, pool_name: str, launch: NodeLaunch, generation: int
    ) -> TaskGroup:
        role = launch.role
        name = naming.task_group_name(cluster.name, pool_name, generation)
        group = TaskGroup(
            name=name,
            tag=cluster_labels.labels_tag(cluster.labels),
            runSpecification=RunSpecification(
                taskTypes=[TASK_TYPE],
                workerTags=[pool_name],
                namespaces=[cluster.namespace],
                taskTimeout=lifetime_left(cluster.ends_at, cluster.name),
                retryPolicy=LOST_NODE_RETRY if launch.replace_lost else None,
            ),
            finishIfAllTasksFinished=True,
            finishIfAnyTaskFailed=role == NodeRole.HEAD,
        )
        with self._requirement_lock:
            requirement = self._get_requirement(cluster_id)
            status = _present(requirement.status, "work requirement status")
            if status != WorkRequirementStatus.RUNNING:
                raise RayDogError(f"cluster {cluster.name} is {status.value}: it cannot take new nodes")
            requirement.taskGroups = [*(requirement.taskGroups or []), group]
            updated = self._call(
                lambda: self._client.work_client.update_work_requirement(requirement), "add task group"
            )
        created = next(g for g in _present(updated.taskGroups, "task groups") if g.name == name)
        self._groups[_present(created.id, "task group id")] = _Group(pool_name, role)
        return created

    def _cancel_requirement(self, requirement: WorkRequirement, failures: list[str]) -> None:
        if _finished(requirement):
            return
        requirement_id = _present(requirement.id, "work requirement id")
        try:
            self._call(
                lambda: self._client.work_client.cancel_work_requirement_by_id(requirement_id, abort=True),
                "cancel work requirement",
            )
        except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
            # A requirement that finished meanwhile refuses the transition (with an error type the SDK
            # does not know, so a bare HTTPError): judge by its status, not by the error's wording.
            if not self._finished_now(requirement_id):
                failures.append(f"work requirement {requirement.name}: {_describe(error)}")

    def _await_uploads(self, cluster_id: str) -> None:
        """With a task output store, the instances stay until the cancelled tasks have ended (bounded by
        UPLOAD_WAIT), so their agents upload the nodes' output before the pools are released."""
        if self._outputs is None:
            return

        def ended() -> bool:
            try:
                return all(node.status.is_final for node in self.list_nodes(cluster_id))
            except Exception:  # noqa: BLE001 - only a wait: the teardown goes on regardless
                return True

        if not processes.wait_until(ended, UPLOAD_WAIT.total_seconds(), interval_s=1.0):
            log.warning(
                "cluster %s: tasks still ending after %s; their output may be missing",
                cluster_id,
                UPLOAD_WAIT,
            )

    def _finished_now(self, requirement_id: str) -> bool:
        try:
            return _finished(self._get_requirement(requirement_id))
        except Exception:  # noqa: BLE001 - unknown counts as not finished: the caller reports the failure
            return False

    # -- pools ---------------------------------------------------------------------------------------

    def _provision_pool(self, cluster: _Cluster, launch: NodeLaunch, template: str, count: int) -> str:
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
        pools = self._client.worker_pool_client

        def provision() -> str:
            pool = self._call(lambda: pools.provision_worker_pool(usage, properties), "provision worker pool")
            return _present(pool.id, "worker pool id")

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
        self._pool_ids[(cluster.namespace, launch.pool_name)] = pool_id
        return pool_id

    def _release_pool(self, pool_id: str) -> None:
        """Shut a pool down and terminate its compute requirement (idempotent)."""
        pools = self._client.worker_pool_client
        pool = self._call(lambda: pools.get_worker_pool_by_id(pool_id), "get worker pool")
        if pool.status not in GONE_POOL:
            self._call(lambda: pools.shutdown_worker_pool_by_id(pool_id), "shut down worker pool")
        compute_id = _provisioned(pool).computeRequirementId
        if compute_id:
            self._compute_ids[pool_id] = compute_id
        self._terminate_compute(compute_id)

    def _terminate_compute(self, compute_id: str | None) -> None:
        if not compute_id:
            return
        compute = self._client.compute_client
        current = self._call(
            lambda: compute.get_compute_requirement_by_id(compute_id), "get compute requirement"
        )
        if current.status != ComputeRequirementStatus.TERMINATED:
            self._call(
                lambda: compute.terminate_compute_requirement_by_id(compute_id),
                "terminate compute requirement",
            )

    def _release_by_name(self, namespace: str, name: str) -> bool:
        """Release a live pool (or a compute requirement left without one) of this name; False if none."""
        pool = self._pool_by_name(namespace, name)
        if pool is not None and pool.status not in GONE_POOL:
            self._release_pool(_present(pool.id, "worker pool id"))
            return True
        compute = self._client.compute_client
        existing = self._find(
            lambda: compute.get_compute_requirement_by_name(namespace, name), "find compute"
        )
        if existing is None or existing.status == ComputeRequirementStatus.TERMINATED:
            return False
        self._terminate_compute(existing.id)
        return True

    def _pool_by_name(self, namespace: str, name: str) -> WorkerPool | None:
        """The pool with exactly this name, or None."""
        pools = self._client.worker_pool_client
        pool = self._find(lambda: pools.get_worker_pool_by_name(namespace, name), "find worker pool")
        if pool is not None:
            self._pool_ids[(namespace, name)] = _present(pool.id, "worker pool id")
        return pool

    def _pool_id(self, namespace: str, name: str) -> str | None:
        if (namespace, name) not in self._pool_ids:
            self._pool_by_name(namespace, name)
        return self._pool_ids.get((namespace, name))

    def _pool_nodes(self, pool_id: str) -> list[str]:
        nodes = self._call(
            lambda: self._client.worker_pool_client.find_nodes(_node_search(pool_id)), "list pool nodes"
        )
        return [
            _present(n.id, "node id")
            for n in nodes
            if n.status is not None and n.status.value in ("RUNNING", "LATE")
        ]

    # -- tasks ---------------------------------------------------------------------------------------

    def _add_tasks(self, cluster_id: str, group: TaskGroup, launch: NodeLaunch, count: int) -> list[str]:
        names = [naming.node_name(group.name, secrets.token_hex(3)) for _ in range(count)]
        tasks = [self._task(cluster_id, name, launch) for name in names]
        group_id = _present(group.id, "task group id")
        self._call(
            lambda: self._client.work_client.add_tasks_to_task_group_by_id(group_id, tasks), "add tasks"
        )
        return names

    def _task(self, cluster_id: str, name: str, launch: NodeLaunch) -> Task:
        secret = self._credentials.key_secret.get_secret_value()
        if any(secret in value for value in launch.env.values()):
            raise RayDogError(
                "refusing to start a node: its environment holds the YellowDog application key secret"
            )
        env = dict(launch.env)
        env["RAYDOG_NODE_ID"] = name
        env["RAYDOG_RAY_START_ARGS"] = " ".join(
            filter(
                None,
                [
                    node_env.join_args(self._ray_start_args(cluster_id, name, launch)),
                    launch.env.get("RAYDOG_RAY_START_ARGS"),
                ],
            )
        )
        if launch.set_cloud_instance_id:
            env["RAY_CLOUD_INSTANCE_ID"] = name
        if self._outputs is not None:
            env["RAYDOG_SAVE_NODE_LOGS"] = "1"  # the default scripts archive their Ray logs as they stop
        env.update(node_placement.observability_env(self.placement, launch, env))
        return Task(
            name=name,
            tag=launch.role.value,
            taskType=TASK_TYPE,
            arguments=list(TASK_ARGUMENTS),
            taskData=launch.script,
            environment=env,
            data=self._outputs.task_data(cluster_id, name) if self._outputs else None,
        )

    def _ray_start_args(self, cluster_id: str, name: str, launch: NodeLaunch) -> list[str]:
        args = node_placement.node_args(self.placement, cluster_id, name, launch)
        if launch.role == NodeRole.HEAD:
            # The dashboard listens on the head's loopback only; clients reach it through an SSH tunnel.
            ports = self._ports(cluster_id)
            args += node_env.head_args(ports, include_dashboard=True, dashboard_host="127.0.0.1")
        return args

    def head_ports(self, cluster_id: str) -> HeadPorts | None:
        """Fixed on machines of their own; on a shared host, chosen by the process that opened the
        cluster, which kept them in a cluster label for the others (None where none is readable)."""
        known = self._head_ports.get(cluster_id)
        if known is not None or self.placement != NodePlacement.SHARED_HOST:
            return known or node_placement.head_ports(self.placement)
        try:
            labels = self._labels_of(self._get_requirement(cluster_id)) or {}
        except Exception:  # noqa: BLE001 - not readable: the caller goes by what it has
            return None
        found = node_placement.head_ports_from_label(labels)
        if found is not None:
            self._head_ports[cluster_id] = found
        return found

    def _ports(self, cluster_id: str) -> HeadPorts:
        """The head's ports as open_cluster chose them (the builder also passes the GCS port to nodes)."""
        if cluster_id not in self._head_ports:
            self._head_ports[cluster_id] = node_placement.head_ports(self.placement)
        return self._head_ports[cluster_id]

    def _obs_ports(self, cluster_id: str) -> ObservabilityPorts:
        """Prometheus' and Grafana's ports, chosen once per cluster like the head's."""
        if cluster_id not in self._observability_ports:
            self._observability_ports[cluster_id] = node_placement.observability_ports(self.placement)
        return self._observability_ports[cluster_id]

    def _cancel_tasks(self, tasks: list[Task]) -> None:
        work = self._client.work_client
        for task in tasks:
            if task.status is not None and task.status.finished:
                continue
            try:
                self._call(partial(work.cancel_task_by_id, _present(task.id, "task id"), True), "cancel task")
            except InvalidRequestException:
                pass  # it finished meanwhile

    def _unfinished_tasks(self, cluster_id: str, groups: Sequence[TaskGroup]) -> int:
        count = 0
        for group in groups:
            tasks = self._list_tasks(TaskSearch(workRequirementId=cluster_id, taskGroupId=group.id))
            count += sum(1 for task in tasks if task.status is None or not task.status.finished)
        return count

    def _pool_tasks(self, cluster_id: str, pool_id: str) -> list[Task]:
        pool = self._call(
            lambda: self._client.worker_pool_client.get_worker_pool_by_id(pool_id), "get worker pool"
        )
        requirement = self._get_requirement(cluster_id)
        group_ids = [g.id for g in requirement.taskGroups or [] if _worker_tag(g) == pool.name]
        tasks: list[Task] = []
        for group_id in group_ids:
            tasks += self._list_tasks(TaskSearch(workRequirementId=cluster_id, taskGroupId=group_id))
        return tasks

    def _list_tasks(self, search: TaskSearch) -> list[Task]:
        return self._call(lambda: self._client.work_client.get_tasks(search).list_all(), "list tasks")

    # -- lookups and caches --------------------------------------------------------------------------

    def _cluster(self, cluster_id: str) -> _Cluster:
        if cluster_id not in self._clusters:
            requirement = self._get_requirement(cluster_id)
            groups = requirement.taskGroups or []
            # The first task group (the head's, or the observability node's) was made with the cluster and
            # got its whole lifetime.
            lifetime = next(
                (g.runSpecification.taskTimeout for g in groups if g.runSpecification.taskTimeout), None
            )
            created = requirement.createdTime or datetime.now(UTC)
            self._clusters[cluster_id] = _Cluster(
                requirement.namespace,
                requirement.name,
                self._labels_of(requirement) or {},
                created + (lifetime or DEFAULT_LIFETIME),
            )
        return self._clusters[cluster_id]

    def _get_requirement(self, cluster_id: str) -> WorkRequirement:
        return self._call(
            lambda: self._client.work_client.get_work_requirement_by_id(cluster_id), "get work requirement"
        )

    def _learn_groups(self, requirement: WorkRequirement) -> None:
        for group in requirement.taskGroups or []:
            group_id = _present(group.id, "task group id")
            if group_id not in self._groups:
                self._groups[group_id] = _Group(_worker_tag(group) or "", None)

    def _refuse_over_cap(self, cluster: _Cluster) -> None:
        """A capped cluster whose cap is used up takes no new node: say so, before asking the platform."""
        cap = SpendCap.from_labels(cluster.labels)
        if cap is not None and spend_cap.remaining_hours(self._client, self._call, cap) <= 0:
            raise SpendCapError(
                f"cluster {cluster.name} has used up {cap.describe()}: the platform takes no new nodes "
                "for it; shut it down, and give the next run a higher cap if it needs one"
            )

    def _cap_note(self, cluster: _Cluster, tasks: Sequence[Task]) -> str:
        """Why nodes of a capped cluster were lost, when its cap is used up ("" otherwise)."""
        cap = SpendCap.from_labels(cluster.labels)
        if cap is None or not any(_lost(t) for t in tasks):
            return ""
        if spend_cap.remaining_hours(self._client, self._call, cap) > 0:
            return ""
        return (
            f"cluster {cluster.name} used up {cap.describe()}: the platform ended its instances "
            "(a spend cap, not a failure of the code it ran)"
        )

    def _learn_addresses(self, namespace: str, tasks: Sequence[Task]) -> None:
        """The addresses of every node newly running a task, a pool at a time: one node search per pool
        (and one instance search where nodes lack public IPs), however many nodes it has."""
        pool_names = {
            self._groups[task.taskGroupId].pool_name
            for task in tasks
            if task.nodeId
            and task.nodeId not in self._addresses
            and task.taskGroupId in self._groups
            and node_status(task)[0] == NodeStatus.RUNNING
        }
        for pool_name in filter(None, pool_names):
            pool_id = self._pool_id(namespace, pool_name)
            if pool_id is None:
                continue
            nodes = self._call(
                partial(self._client.worker_pool_client.find_nodes, _node_search(pool_id)), "list pool nodes"
            )
            public_ips: dict[str, str | None] = {}
            if any(n.details and n.details.publicIpAddress is None for n in nodes):
                public_ips = self._public_ips(pool_id)
            for node in nodes:
                if node.id is None or node.details is None:
                    continue
                details = node.details
                public_ip = details.publicIpAddress or public_ips.get(details.instanceId)
                self._addresses[node.id] = (details.privateIpAddress, public_ip, node.workerPoolId)

    def _node_addresses(self, node_id: str) -> tuple[str | None, str | None, str | None]:
        """(private IP, public IP or None, pool id) of a node; fixed for its life, so cached."""
        if node_id not in self._addresses:
            pools = self._client.worker_pool_client
            node = self._call(lambda: pools.get_node_by_id(node_id), "get node")
            details = node.details
            public_ip = details.publicIpAddress if details else None
            if details and public_ip is None:
                pool_id = _present(node.workerPoolId, "node's pool id")
                public_ip = self._public_ips(pool_id).get(details.instanceId)
            self._addresses[node_id] = (
                details.privateIpAddress if details else None,
                public_ip,
                node.workerPoolId,
            )
        return self._addresses[node_id]

    def _public_ips(self, pool_id: str) -> dict[str, str | None]:
        """Instance id -> public IP of a pool's instances (nodes no longer carry it): one search."""
        pool = self._call(
            partial(self._client.worker_pool_client.get_worker_pool_by_id, pool_id), "get worker pool"
        )
        search = InstanceSearch(computeRequirementId=_provisioned(pool).computeRequirementId)
        instances = self._call(partial(_all_instances, self._client.compute_client, search), "list instances")
        return {i.id.instanceId: i.publicIpAddress for i in instances if i.id}

    def _raydog_requirements(self, statuses: list[WorkRequirementStatus] | None) -> list[WorkRequirement]:
        search = WorkRequirementSearch(statuses=statuses)
        summaries = self._call(
            lambda: self._client.work_client.get_work_requirements(search).list_all(), "list clusters"
        )
        found = []
        for summary in summaries:
            requirement = self._get_requirement(_present(summary.id, "work requirement id"))
            if self._labels_of(requirement) is not None:
                found.append(requirement)
        return found

    @staticmethod
    def _labels_of(requirement: WorkRequirement) -> dict[str, str] | None:
        for group in requirement.taskGroups or []:
            labels = cluster_labels.parse_labels_tag(group.tag)
            if labels is not None:
                return labels
        return None

    @staticmethod
    def _pool_names(requirement: WorkRequirement) -> list[str]:
        return list(dict.fromkeys(filter(None, (_worker_tag(g) for g in requirement.taskGroups or []))))

    def _check_template(self, template: str | None, field: str) -> str:
        """The template, checked before anything is created: given, and known to the platform (to the key)."""
        if not template:
            raise SpecError(
                field, "required for backend 'yellowdog'", "give a compute requirement template id or name"
            )
        if template in self._templates:
            return template
        compute = self._client.compute_client
        namespace, _, name = template.rpartition("/")
        try:
            if template.startswith("ydid:") or not namespace:
                found = self._call(
                    lambda: compute.get_compute_requirement_template_by_id(template), "get template"
                )
            else:
                found = self._call(
                    lambda: compute.get_compute_requirement_template_by_name(namespace, name), "get template"
                )
        except InvalidRequestException as error:
            raise SpecError(
                field,
                f"compute requirement template {template!r} was not found ({error.message})",
                "give the id (ydid:crt:...) or 'namespace/name' of a template your application key can use",
            ) from None
        self._templates[template] = found
        return template

    def _find(self, call: Callable[[], T], what: str) -> T | None:
        """A lookup by name; None when the platform has nothing of that name (it refuses the request)."""
        try:
            return self._call(call, what)
        except InvalidRequestException:
            return None

    def _call(self, call: Callable[[], T], what: str) -> T:
        try:
            return with_retry(call, what)
        except NotAuthorisedException:
            raise SpecError(
                "yd_application_key_id",
                f"the YellowDog platform at {self.api_url} rejected the application key {self._credentials.key_id!r}",
                "check yd_application_key_id / yd_application_key_secret (or YD_API_KEY_ID / YD_API_KEY_SECRET)",
            ) from None
        except requests.ConnectionError:
            raise RayDogError(
                f"cannot reach the YellowDog platform at {self.api_url} ({what}): check yd_platform_api_url / YD_API_URL"
            ) from None


def _present(value: T | None, what: str) -> T:
    """A field the SDK types as optional (its models also build requests) but the platform always fills
    in on what it returns: a reply without it is the platform's error, and is reported as one."""
    if value is None:
        raise RayDogError(f"the YellowDog platform returned no {what}")
    return value


IDLE_SHUTDOWN_ENV = "RAYDOG_YELLOWDOG_IDLE_SHUTDOWN_S"


def _idle_shutdown_from_environment() -> timedelta:
    """$RAYDOG_YELLOWDOG_IDLE_SHUTDOWN_S (seconds, at least 1), else IDLE_SHUTDOWN: how long a node
    whose task ended, or an empty pool, is kept for the next task before the platform releases it."""
    seconds = limits.number_from_environment(
        IDLE_SHUTDOWN_ENV, lambda s: 1 <= s <= 24 * 3600, "a number of seconds from 1 to 86400", "e.g. 30"
    )
    return timedelta(seconds=seconds) if seconds is not None else IDLE_SHUTDOWN


def _finished(requirement: WorkRequirement) -> bool:
    return _present(requirement.status, "work requirement status").finished


def _provisioned(pool: WorkerPool) -> ProvisionedWorkerPool:
    """The SDK types pool lookups as the abstract WorkerPool; every pool RayDog makes is provisioned."""
    if not isinstance(pool, ProvisionedWorkerPool):
        raise RayDogError(f"worker pool {pool.name} is a {type(pool).__name__}, not one RayDog provisioned")
    return pool


def _template_field(pool: PoolPlan) -> str:
    """The spec field naming a pool's template: a worker pool's is inside its entry of worker_pools."""
    if pool.template_field:
        return pool.template_field
    field = TEMPLATE_FIELD[pool.role]
    return f"{pool.pool}.{field}" if pool.role == NodeRole.WORKER and pool.pool else field


def _worker_tag(group: TaskGroup) -> str | None:
    tags = group.runSpecification.workerTags if group.runSpecification else None
    return tags[0] if tags else None


def _all_instances(compute: ComputeClient, search: InstanceSearch) -> list[Instance]:
    return compute.get_instances(search).list_all()


def _node_search(pool_id: str):
    from yellowdog_client.model import NodeSearch

    return NodeSearch(workerPoolId=pool_id)


def _run_identity(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that tell runs apart (the caller's), without RayDog's own bookkeeping labels."""
    return {key: value for key, value in labels.items() if not key.startswith("raydog-")}


def _lost(task: Task) -> bool:
    """The task's machine went away under it (the platform ended it: a reclaim, a cap, a crash)."""
    return task.status == TaskStatus.FAILED and any(
        e.errorType == "ALLOCATION_LOST" for e in task.errors or []
    )


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
