"""A cluster's work requirement: the one platform record that is the cluster.

It is created under the cluster's name (never over a running one someone else may be using), grows a
task group for each generation of each node pool, and is cancelled at shut-down. What the backend needs
of a cluster (its namespace, labels, when its lifetime ends) is read from it once, so any process with
the cluster id can take the cluster over.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from yellowdog_client.model import (
    RetryPolicy,
    RunSpecification,
    Selection,
    Task,
    TaskErrorSelector,
    TaskErrorType,
    TaskGroup,
    WorkRequirement,
    WorkRequirementStatus,
)
from yellowdog_client.model.exceptions import InvalidRequestException

from raydog_core import naming
from raydog_core.backends.base import NodeLaunch, NodeRole, lifetime_left
from raydog_core.backends.yellowdog import labels as cluster_labels
from raydog_core.backends.yellowdog.api import Api, describe, finished, present, worker_tag
from raydog_core.errors import ClusterNameTakenError, RayDogError

TASK_TYPE = "bash"
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


@dataclass(frozen=True)
class Cluster:
    """What the backend needs to know of a cluster, read once from its work requirement."""

    namespace: str
    name: str
    labels: dict[str, str]
    ends_at: datetime  # creation + cluster lifetime: tasks started later get what is left of it


@dataclass(frozen=True)
class Group:
    pool_name: str  # = the worker tag
    role: NodeRole | None


NO_GROUP = Group("", None)  # a task of a group this process has not learnt


def pool_names(requirement: WorkRequirement) -> list[str]:
    """The names of the pools the cluster's task groups run on, in the order the groups were made."""
    return list(dict.fromkeys(filter(None, (worker_tag(g) for g in requirement.taskGroups or []))))


class Requirements:
    """Clusters' work requirements, and what this process has learnt of them (caches only)."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self._lock = threading.Lock()  # read-modify-write of a work requirement
        self.clusters: dict[str, Cluster] = {}
        self._groups: dict[str, Group] = {}  # task group id -> pool

    def get(self, cluster_id: str) -> WorkRequirement:
        work = self._api.client.work_client
        return self._api.call(lambda: work.get_work_requirement_by_id(cluster_id), "get work requirement")

    def add(self, requirement: WorkRequirement) -> WorkRequirement:
        """Create the work requirement. A running one of the same name is never replaced, whoever made it
        (another process, flow run or DAG run may be using it): the build is refused with the way out.
        One that has finished does not stand in the way.
        """
        work = self._api.client.work_client
        try:
            return self._api.call(lambda: work.add_work_requirement(requirement), "create work requirement")
        except InvalidRequestException:
            # The SDK has no "already exists" type: a refusal is a name clash when a live one is there.
            earlier = self._live_by_name(requirement.namespace, requirement.name)
            if earlier is None:
                raise
        theirs = _run_identity(cluster_labels.labels_of(earlier) or {})
        raise ClusterNameTakenError(
            f"cluster_name {requirement.name!r} is in use in namespace {requirement.namespace} by a running "
            f"cluster (labels {theirs or 'none'}) that this client did not create: give concurrent runs "
            f"their own cluster_name, or shut that one down if nobody uses it "
            f"(raydog reap --name {requirement.name}, or raydog down with its state)"
        )

    def _live_by_name(self, namespace: str, name: str) -> WorkRequirement | None:
        work = self._api.client.work_client
        found = self._api.find(
            lambda: work.get_work_requirement_by_name(namespace, name), "find work requirement"
        )
        return None if found is None or finished(found) else found

    def cluster(self, cluster_id: str) -> Cluster:
        if cluster_id not in self.clusters:
            requirement = self.get(cluster_id)
            groups = requirement.taskGroups or []
            # The first task group (the head's, or the observability node's) was made with the cluster and
            # got its whole lifetime.
            lifetime = next(
                (g.runSpecification.taskTimeout for g in groups if g.runSpecification.taskTimeout), None
            )
            created = requirement.createdTime or datetime.now(UTC)
            self.clusters[cluster_id] = Cluster(
                requirement.namespace,
                requirement.name,
                cluster_labels.labels_of(requirement) or {},
                created + (lifetime or DEFAULT_LIFETIME),
            )
        return self.clusters[cluster_id]

    def append_group(
        self, cluster_id: str, cluster: Cluster, pool_name: str, launch: NodeLaunch, generation: int
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
        with self._lock:
            requirement = self.get(cluster_id)
            status = present(requirement.status, "work requirement status")
            if status != WorkRequirementStatus.RUNNING:
                raise RayDogError(f"cluster {cluster.name} is {status.value}: it cannot take new nodes")
            requirement.taskGroups = [*(requirement.taskGroups or []), group]
            updated = self._api.call(
                lambda: self._api.client.work_client.update_work_requirement(requirement), "add task group"
            )
        created = next(g for g in present(updated.taskGroups, "task groups") if g.name == name)
        self._groups[present(created.id, "task group id")] = Group(pool_name, role)
        return created

    def knows_groups_of(self, tasks: Iterable[Task]) -> bool:
        return all(t.taskGroupId in self._groups for t in tasks)

    def learn_groups(self, requirement: WorkRequirement) -> None:
        for group in requirement.taskGroups or []:
            group_id = present(group.id, "task group id")
            if group_id not in self._groups:
                self._groups[group_id] = Group(worker_tag(group) or "", None)

    def group(self, group_id: str) -> Group:
        """The pool (and role) of a task group, as far as this process has learnt them."""
        return self._groups.get(group_id, NO_GROUP)

    def pool_of(self, task: Task) -> str:
        """The name of the pool a task runs on; "" when its group is unknown here."""
        return self.group(task.taskGroupId or "").pool_name

    def cancel(self, requirement: WorkRequirement, failures: list[str]) -> None:
        if finished(requirement):
            return
        requirement_id = present(requirement.id, "work requirement id")
        try:
            self._api.call(
                lambda: self._api.client.work_client.cancel_work_requirement_by_id(
                    requirement_id, abort=True
                ),
                "cancel work requirement",
            )
        except Exception as error:  # noqa: BLE001 - teardown goes on past any failure and reports it
            # A requirement that finished meanwhile refuses the transition (with an error type the SDK
            # does not know, so a bare HTTPError): judge by its status, not by the error's wording.
            if not self._finished_now(requirement_id):
                failures.append(f"work requirement {requirement.name}: {describe(error)}")

    def _finished_now(self, requirement_id: str) -> bool:
        try:
            return finished(self.get(requirement_id))
        except Exception:  # noqa: BLE001 - unknown counts as not finished: the caller reports the failure
            return False


def _run_identity(labels: Mapping[str, str]) -> dict[str, str]:
    """The labels that tell runs apart (the caller's), without RayDog's own bookkeeping labels."""
    return {key: value for key, value in labels.items() if not key.startswith("raydog-")}
