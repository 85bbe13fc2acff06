"""YellowDogBackend: Ray nodes as YellowDog tasks on provisioned worker pools.

A cluster is one work requirement (WR), named after the cluster. Each node pool (head, observability,
every worker pool) is a task group in that WR plus a provisioned worker pool of the same name, bound to
the group by its worker tag; each Ray node is one `bash` task whose task data is the node script. A
node's id is its task's name, known before the task exists, so a node script gets it as RAYDOG_NODE_ID.

Nothing here stores state of its own beyond caches: any process with the cluster id (the WR id) and an
application key can list, grow, shrink and shut the cluster down. Resources stop by themselves when the
client dies: tasks time out at the cluster lifetime and idle nodes and pools shut down.

The backend puts the Backend protocol together from collaborators of one concept each: `api` (calls to
the platform), `templates` (checked and priced), `requirements` (the WR and its task groups), `pools`,
`tasks` (the nodes' tasks), `addresses`, `listing` (clusters found on the platform), `spend_cap` and
`task_outputs`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from yellowdog_client.model import Instance, InstanceSearch, Task, WorkRequirement
from yellowdog_client.model.exceptions import InvalidRequestException

from raydog_core import naming, processes
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
)
from raydog_core.backends.yellowdog import listing, quotes, spend_cap, task_outputs
from raydog_core.backends.yellowdog import placement as node_placement
from raydog_core.backends.yellowdog.addresses import NodeAddresses
from raydog_core.backends.yellowdog.api import Api, all_instances, describe, present, worker_tag
from raydog_core.backends.yellowdog.labels import labels_of
from raydog_core.backends.yellowdog.node_status import machine_lost, node_status
from raydog_core.backends.yellowdog.pools import GONE_POOL, Pools, idle_shutdown_from_environment
from raydog_core.backends.yellowdog.requirements import DEFAULT_LIFETIME, Cluster, Requirements
from raydog_core.backends.yellowdog.spend_cap import SpendCap
from raydog_core.backends.yellowdog.task_outputs import FailureTails, TaskOutputStore
from raydog_core.backends.yellowdog.tasks import NodeTasks
from raydog_core.backends.yellowdog.templates import TEMPLATE_FIELD, Templates
from raydog_core.credentials import YellowDogCredentials
from raydog_core.errors import PoolGoneError, RayDogError
from raydog_core.pricing import ClusterUsage, PlanQuote, SpendStatus
from raydog_core.spec import NodePlacement

if TYPE_CHECKING:
    from raydog_core.postmortem import LogBudget

log = logging.getLogger("raydog")

# At shut-down with a task output store: how long the pools wait for cancelled tasks to end (and their
# agents to upload the nodes' output) before they are released.
UPLOAD_WAIT = timedelta(seconds=60)


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
        self._failure_tails = FailureTails(self._outputs) if self._outputs is not None else None
        self._api = Api(credentials)
        self._client = self._api.client
        self.api_url = credentials.api_url
        self.placement = node_placement.resolve_placement(placement)
        self.capabilities = node_placement.capabilities(self.placement)
        self._pools = Pools(self._api, idle_shutdown or idle_shutdown_from_environment())
        self._template_checks = Templates(self._api)
        self._templates = self._template_checks.checked  # checked, by the spec's reference
        self._requirements = Requirements(self._api)
        self._tasks = NodeTasks(self._api, credentials, self.placement, self._outputs, self._ports)
        self._addresses = NodeAddresses(self._api, self._pools)
        self._head_ports: dict[str, HeadPorts] = {}
        self._observability_ports: dict[str, ObservabilityPorts] = {}

    def __repr__(self) -> str:
        return (
            f"YellowDogBackend(api_url={self.api_url!r}, key_id={self._credentials.key_id!r}, "
            f"placement={self.placement.value!r})"
        )

    @property
    def idle_shutdown(self) -> timedelta:
        """How long a node whose task ended, or an empty pool, is kept before the platform releases it."""
        return self._pools.idle_shutdown

    # -- clusters -----------------------------------------------------------------------------------

    def check_plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> None:
        """Every pool's template exists for this key, and the head's gives no spot instances unless the
        spec allows it (`templates`)."""
        self._template_checks.check_plan(options, pools)

    def plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> PlanQuote:
        """check_plan, then each pool priced from its template's sources and the platform's price list,
        and the allowances that would cover the cluster."""
        return self._template_checks.plan(options, pools)

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
                self._client, self._api.call, options.namespace, options.name, options.max_node_hours
            )
            labels.update(cap.labels())
        try:
            cluster_id = present(self._requirements.add(requirement).id, "work requirement id")
        except BaseException:
            if cap is not None:
                spend_cap.delete(self._client, self._api.call, cap)
            raise
        lifetime = options.lifetime or DEFAULT_LIFETIME
        if options.lifetime is None:
            log.info(
                "cluster %s has no cluster_lifetime: its nodes stop after %s at the latest",
                options.name,
                lifetime,
            )
        labels.update(node_placement.head_ports_label(self.placement, self._ports(cluster_id)))
        self._requirements.clusters[cluster_id] = Cluster(
            options.namespace, options.name, labels, datetime.now(UTC) + lifetime
        )
        return ClusterHandle(
            cluster_id, self._ports(cluster_id), log_dir=None, observability=self._obs_ports(cluster_id)
        )

    def list_clusters(self) -> list[ClusterRecord]:
        """Clusters with a live work requirement, and finished ones still holding a live pool (`listing`)."""
        return listing.list_clusters(self._api, self._requirements, self._pools, self.kind)

    def live_resources(self) -> list[str]:
        """Live work requirements, pools and compute requirements of every RayDog cluster the key sees,
        and RayDog's spend cap allowances."""
        return listing.live_resources(self._api, self._requirements, self._pools)

    def shut_down(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> list[str]:
        failures: list[str] = []
        try:
            requirement = self._requirements.get(cluster_id)
        except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
            failures.append(f"work requirement {cluster_id}: {describe(error)}")
            requirement = None
        if requirement is not None:
            self._requirements.cancel(requirement, failures)
            self._await_uploads(cluster_id)
        for pool_id in self._pools.of_cluster(requirement, pool_ids, failures):
            try:
                self._pools.release(pool_id)
            except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
                failures.append(f"worker pool {pool_id}: {describe(error)}")
        cap = SpendCap.from_labels(labels_of(requirement) or {}) if requirement is not None else None
        if cap is not None:
            try:
                spend_cap.delete(self._client, self._api.call, cap)
            except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
                failures.append(f"spend cap allowance {cap.allowance_id}: {describe(error)}")
        node_placement.remove_node_files(self.placement, cluster_id)
        return failures

    def usage(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> ClusterUsage:
        """Instance-hours of every pool of the cluster, from the platform's instance records (creation to
        termination), priced from its price list: a few calls per pool, whatever its node count."""
        failures: list[str] = []
        requirement = self._requirements.get(cluster_id)
        pools = self._pools.of_cluster(requirement, pool_ids, failures, fresh=False)
        if failures:
            raise RayDogError("cannot measure the cluster's usage: " + "; ".join(failures))
        instances: list[Instance] = []
        compute = self._client.compute_client
        for pool_id in pools:
            search = InstanceSearch(computeRequirementId=self._pools.compute_id(pool_id))
            instances += self._api.call(partial(all_instances, compute, search), "list instances")
        hours, cost, currency = quotes.instance_usage(
            instances, quotes.PriceList(self._client, self._api.call), datetime.now(UTC)
        )
        return ClusterUsage(node_hours=hours, cost=cost, currency=currency)

    def spend(self, cluster_id: str) -> SpendStatus | None:
        """Used node-hours against the cap, from the cap's allowance (one call)."""
        cap = SpendCap.from_labels(self._requirements.cluster(cluster_id).labels)
        if cap is None:
            return None
        remaining = spend_cap.remaining_hours(self._client, self._api.call, cap)
        return SpendStatus(used_hours=max(cap.hours - remaining, 0.0), cap_hours=cap.hours)

    def close(self) -> None:
        self._api.close()

    # -- pools and nodes ----------------------------------------------------------------------------

    def create_pool(self, cluster_id: str, launch: NodeLaunch, count: int) -> tuple[str, list[str]]:
        cluster = self._requirements.cluster(cluster_id)
        spend_cap.refuse_over_cap(self._client, self._api.call, cluster.name, cluster.labels)
        pool_name = naming.check_name("pool name", launch.pool_name)
        template = self._template_checks.check(
            launch.yellowdog.compute_requirement_template_id, TEMPLATE_FIELD[launch.role]
        )
        # A pool of this name may have been here before (shut down idle): its groups keep their names.
        groups = self._requirements.get(cluster_id).taskGroups or []
        earlier = [g for g in groups if worker_tag(g) == pool_name]
        group = self._requirements.append_group(cluster_id, cluster, pool_name, launch, len(earlier) + 1)
        pool_id = self._pools.provision(cluster, launch, template, count)
        try:
            node_ids = self._tasks.add(cluster_id, group, launch, count)
        except BaseException:
            self._pools.release(pool_id)
            raise
        return pool_id, node_ids

    def add_nodes(self, cluster_id: str, pool_id: str, launch: NodeLaunch, count: int) -> list[str]:
        cluster = self._requirements.cluster(cluster_id)
        spend_cap.refuse_over_cap(self._client, self._api.call, cluster.name, cluster.labels)
        pool = self._pools.get(pool_id)
        pool_status = present(pool.status, "worker pool status")
        pool_name = present(pool.name, "worker pool name")
        if pool_status in GONE_POOL:
            raise PoolGoneError(f"worker pool {pool_name} is {pool_status.value}: create a new pool instead")
        requirement = self._requirements.get(cluster_id)
        groups = [g for g in requirement.taskGroups or [] if worker_tag(g) == pool_name]
        live = [g for g in groups if not present(g.status, "task group status").terminated]
        append = partial(self._requirements.append_group, cluster_id, cluster, pool_name, launch)
        group = live[-1] if live else append(len(groups) + 1)
        # Nodes whose task was cancelled idle until their idle shutdown and take new tasks meanwhile: size
        # the pool for the tasks that need a node (unfinished ones plus the new), never below what runs.
        current = len(self._pools.running_nodes(pool_id))
        size = max(current, self._tasks.unfinished(cluster_id, live) + count)
        if size != current:
            self._pools.resize(pool_id, size)
        try:
            return self._tasks.add(cluster_id, group, launch, count)
        except InvalidRequestException:  # the group finished meanwhile: the next generation takes the tasks
            return self._tasks.add(cluster_id, append(len(groups) + 2), launch, count)

    def list_nodes(self, cluster_id: str) -> list[NodeInfo]:
        tasks = self._tasks.of_cluster(cluster_id)
        if not self._requirements.knows_groups_of(tasks):
            self._requirements.learn_groups(self._requirements.get(cluster_id))
        cluster = self._requirements.cluster(cluster_id)
        self._pools.feed_starved(cluster.namespace, tasks, self._requirements.pool_of)
        self._addresses.learn(cluster.namespace, tasks, self._requirements.pool_of)
        capped = spend_cap.lost_to_cap(self._client, self._api.call, cluster.name, cluster.labels, tasks)
        return [self._node_info(cluster_id, cluster.namespace, task, capped) for task in tasks]

    def _node_info(self, cluster_id: str, namespace: str, task: Task, capped: str) -> NodeInfo:
        """A node as its task shows it; `capped`: why the cluster's lost nodes were lost, if to its cap."""
        group = self._requirements.group(present(task.taskGroupId, "task group id"))
        status, detail = node_status(task)
        last_error = task.errors[-1].errorType if task.errors else None
        ended_by = (
            NodeEnd.MACHINE_LOST if status == NodeStatus.FAILED and last_error == "ALLOCATION_LOST" else None
        )
        if capped and machine_lost(task):
            detail = f"{detail}; {capped}"
            ended_by = NodeEnd.SPEND_CAP
        if status == NodeStatus.FAILED and task.name and self._failure_tails is not None:
            detail += self._failure_tails.tail(cluster_id, task.name)
        short = self._pools.shortage(group.pool_name) if task.status and task.status.waiting else None
        private_ip = public_ip = None
        pool_id = self._pools.id_of(namespace, group.pool_name) if group.pool_name else None
        if status == NodeStatus.RUNNING and task.nodeId:
            private_ip, public_ip, pool_id = self._addresses.of(task.nodeId)
        return NodeInfo(
            node_id=present(task.name, "task name"),
            pool_id=pool_id or "",
            role=NodeRole(task.tag)
            if task.tag is not None and task.tag in NodeRole._value2member_map_
            else (group.role or NodeRole.WORKER),
            status=status,
            private_ip=private_ip,
            public_ip=public_ip,
            detail=detail,
            ended_by=ended_by,
            blocked_by=f"the platform has no capacity for pool {group.pool_name}: {short}" if short else "",
            started_at=task.startedTime,
            ended_at=task.finishedTime if status.is_final else None,
        )

    def terminate_nodes(self, cluster_id: str, node_ids: Sequence[str]) -> None:
        wanted = set(node_ids)
        self._tasks.cancel([t for t in self._tasks.of_cluster(cluster_id) if t.name in wanted])

    def remove_pool(self, cluster_id: str, pool_id: str) -> None:
        pool_name = self._pools.get(pool_id).name
        self._tasks.cancel(self._tasks.of_pool(cluster_id, self._requirements.get(cluster_id), pool_name))
        self._pools.release(pool_id)

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

    # -- ports ----------------------------------------------------------------------------------------

    def head_ports(self, cluster_id: str) -> HeadPorts | None:
        """Fixed on machines of their own; on a shared host, chosen by the process that opened the
        cluster, which kept them in a cluster label for the others (None where none is readable)."""
        known = self._head_ports.get(cluster_id)
        if known is not None or self.placement != NodePlacement.SHARED_HOST:
            return known or node_placement.head_ports(self.placement)
        try:
            labels = labels_of(self._requirements.get(cluster_id)) or {}
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

    # -- single steps, which tests call on their own ---------------------------------------------------

    def _task(self, cluster_id: str, name: str, launch: NodeLaunch) -> Task:
        """The task that would start this node (nothing is created)."""
        return self._tasks.task(cluster_id, name, launch)

    def _check_template(self, template: str | None, field: str) -> str:
        """The template, checked before anything is created (`templates`)."""
        return self._template_checks.check(template, field)
