"""The platform's entities as the emulator keeps them, each rendering its own wire JSON.

Status values are exactly the SDK 15.9.1 enum values. Every server-assigned field (ids, statuses, times)
is always filled in, because the SDK silently turns a malformed one into None.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from raydog_core.processes import ProcessRef
from raydog_core.testing.emulator import wire
from raydog_core.testing.emulator.retries import retries_left
from raydog_core.testing.emulator.wire import compact, timestamp

TASK_WAITING = frozenset({"PENDING", "READY"})
TASK_IN_PROGRESS = frozenset({"ALLOCATED", "DOWNLOADING", "EXECUTING", "UPLOADING"})
TASK_FINISHED = frozenset({"COMPLETED", "FAILED", "ABORTED", "CANCELLED", "DISCARDED", "RESUBMITTED"})
GROUP_FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
REQUIREMENT_FINISHED = frozenset({"COMPLETED", "FAILED", "CANCELLED"})
POOL_GONE = frozenset({"SHUTDOWN", "TERMINATED"})


@dataclass
class Task:
    id: str
    group: TaskGroup
    spec: dict[str, Any]  # the Task JSON as submitted
    status: str = "READY"
    created: datetime = field(default_factory=wire.now)
    started: datetime | None = None
    finished: datetime | None = None
    instance: Instance | None = None
    process: ProcessRef | None = None
    sandbox: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    abort_requested: datetime | None = None
    stopping: bool = False  # its processes are being stopped: their exit is not the task's own result
    retry_count: int = 0  # attempts started again by the group's retry policy

    @property
    def name(self) -> str | None:
        return self.spec.get("name")

    @property
    def timeout(self) -> timedelta | None:
        return wire.parse_duration(self.spec.get("timeout")) or self.group.task_timeout

    def fail(self, error_type: str, message: str, exit_code: int | None = None) -> bool:
        """Record a failed attempt. True if the task has failed; False if its group's retry policy starts
        it again (it is READY, off its instance, and its `retryCount` has grown)."""
        error = compact(
            {
                "timestamp": timestamp(wire.now()),
                "error": message,
                "errorType": error_type,
                "statusAtFailure": self.status,
                "processExitCode": exit_code,
                "nodeId": self.instance.node_id if self.instance else None,
                "workerId": self.instance.worker_id if self.instance else None,
            }
        )
        retry = retries_left(self.group.run, self.retry_count, error)
        self.errors.append({**error, "causedFailure": not retry})
        if retry:
            self.retry_count += 1
            self.status, self.started, self.process = "READY", None, None
            return False
        self.status = "FAILED"
        return True

    def to_json(self) -> dict[str, Any]:
        data = dict(self.spec)
        data.update(
            compact(
                {
                    "id": self.id,
                    "status": self.status,
                    "retryCount": self.retry_count,
                    "taskGroupId": self.group.id,
                    "workerId": self.instance.worker_id if self.instance else None,
                    "nodeId": self.instance.node_id if self.instance else None,
                    "errors": self.errors or None,
                    "startedTime": timestamp(self.started),
                    "finishedTime": timestamp(self.finished),
                    "abortRequestedTime": timestamp(self.abort_requested),
                }
            )
        )
        return data


@dataclass
class TaskGroup:
    id: str
    requirement: WorkRequirement
    spec: dict[str, Any]
    status: str = "PENDING"
    changed: datetime = field(default_factory=wire.now)
    tasks: list[Task] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def run(self) -> dict[str, Any]:
        return self.spec.get("runSpecification") or {}

    @property
    def task_timeout(self) -> timedelta | None:
        return wire.parse_duration(self.run.get("taskTimeout"))

    @property
    def finished(self) -> bool:
        return self.status in GROUP_FINISHED

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status, self.changed = status, wire.now()

    def to_json(self) -> dict[str, Any]:
        counts = Counter(task.status for task in self.tasks)
        data = dict(self.spec)
        data.update(
            {
                "id": self.id,
                "status": self.status,
                "statusChangedTime": timestamp(self.changed),
                "taskSummary": {
                    "statusCounts": dict(counts),
                    "taskCount": len(self.tasks),
                    "lastUpdatedTime": timestamp(self.changed),
                },
            }
        )
        data.setdefault("priority", 0)
        data.setdefault("starved", False)
        data.setdefault("waitingOnDependency", False)
        data.setdefault("finishIfAllTasksFinished", True)
        data.setdefault("finishIfAnyTaskFailed", False)
        return data


@dataclass
class WorkRequirement:
    id: str
    namespace: str
    name: str
    tag: str | None
    priority: float = 0
    status: str = "RUNNING"
    created: datetime = field(default_factory=wire.now)
    changed: datetime = field(default_factory=wire.now)
    groups: list[TaskGroup] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.status in REQUIREMENT_FINISHED

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status, self.changed = status, wire.now()

    def tasks(self) -> list[Task]:
        return [task for group in self.groups for task in group.tasks]

    def to_json(self) -> dict[str, Any]:
        return compact(
            {
                "id": self.id,
                "namespace": self.namespace,
                "name": self.name,
                "tag": self.tag,
                "priority": self.priority,
                "status": self.status,
                "createdTime": timestamp(self.created),
                "statusChangedTime": timestamp(self.changed),
                "taskGroups": [group.to_json() for group in self.groups],
            }
        )

    def summary_json(self) -> dict[str, Any]:
        tasks = self.tasks()
        return compact(
            {
                "id": self.id,
                "namespace": self.namespace,
                "name": self.name,
                "tag": self.tag,
                "priority": self.priority,
                "status": self.status,
                "createdTime": timestamp(self.created),
                "statusChangedTime": timestamp(self.changed),
                "completedTaskCount": sum(1 for t in tasks if t.status == "COMPLETED"),
                "totalTaskCount": len(tasks),
                "healthy": not any(t.status == "FAILED" for t in tasks),
            }
        )


@dataclass
class Instance:
    """One emulated machine: its compute instance, its YellowDog node and its single worker."""

    number: int
    source_id: str
    requirement: ComputeRequirement
    pool: WorkerPool
    status: str = "PENDING"  # InstanceStatus
    node_status: str | None = None  # NodeStatus once registered
    worker_status: str | None = None
    created: datetime = field(default_factory=wire.now)
    changed: datetime = field(default_factory=wire.now)
    boots_at: datetime | None = None
    registered: datetime | None = None
    deregistered: datetime | None = None
    idle_since: datetime | None = None
    node_id: str = field(default_factory=lambda: wire.new_id("node"))
    worker_id: str = ""
    current_task: Task | None = None
    home: str | None = None
    ip: str = "127.0.0.1"
    # (since, status) of every status it had: what the platform bills and allowances count
    history: list[tuple[datetime, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.worker_id = self.worker_id or wire.new_id("wrkr", 1)
        self.history = self.history or [(self.created, self.status)]

    @property
    def source(self) -> SourceTemplate:
        return self.requirement.source

    @property
    def instance_id(self) -> str:
        return f"i-emu{self.number:08d}"

    @property
    def alive(self) -> bool:
        return self.status not in ("TERMINATED",)

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status, self.changed = status, wire.now()
            self.history.append((self.changed, status))

    def hours_in(self, statuses: Collection[str], start: datetime, end: datetime) -> float:
        """Hours this instance spent in any of `statuses` between `start` and `end`."""
        total = 0.0
        for (since, status), (until, _) in zip(self.history, [*self.history[1:], (end, "")], strict=True):
            if status in statuses:
                overlap = min(until, end) - max(since, start)
                total += max(overlap.total_seconds(), 0.0) / 3600
        return total

    def to_json(self) -> dict[str, Any]:
        source = self.source
        return compact(
            {
                "type": wire.AWS_INSTANCE if source.provider == "AWS" else wire.SIMULATOR_INSTANCE,
                "id": {"sourceId": self.source_id, "instanceId": self.instance_id},
                "createdTime": timestamp(self.created),
                "provider": source.provider,
                "instanceType": source.instance_type,
                "region": source.region,
                "imageId": self.requirement.images_id or "emulated-image",
                "hostname": f"emu-{self.number}",
                "privateIpAddress": self.ip,
                "publicIpAddress": self.ip,
                "spot": source.spot,
                "status": self.status,
                "statusChangedTime": timestamp(self.changed),
            }
        )

    def node_json(self) -> dict[str, Any]:
        workers = []
        if self.worker_status:
            workers.append(
                compact(
                    {
                        "id": self.worker_id,
                        "status": self.worker_status,
                        "taskGroupId": self.current_task.group.id if self.current_task else None,
                        "registeredTime": timestamp(self.registered),
                    }
                )
            )
        return compact(
            {
                "id": self.node_id,
                "workerPoolId": self.pool.id,
                "status": self.node_status or "RUNNING",
                "statusChangedTime": timestamp(self.changed),
                "registeredTime": timestamp(self.registered or self.created),
                "deregisteredTime": timestamp(self.deregistered),
                "agentVersion": "emulated",
                "details": {
                    "instanceId": self.instance_id,
                    "provider": self.source.provider,
                    "region": self.source.region,
                    "sourceName": self.source.name,
                    "sourceNumber": 0,
                    "instanceType": self.source.instance_type,
                    "hostname": f"emu-{self.number}",
                    "privateIpAddress": self.ip,
                    "publicIpAddress": self.ip,
                    "vcpus": 1.0,
                    "ram": 1.0,
                    "supportedTaskTypes": sorted(self.pool.task_types),
                    "workerTag": self.pool.worker_tag,
                    "spot": self.source.spot,
                },
                "workers": workers,
            }
        )


@dataclass
class ComputeRequirement:
    id: str
    namespace: str
    name: str
    tag: str | None
    template_id: str
    target: int
    source_id: str
    source: SourceTemplate
    images_id: str | None = None
    user_data: str | None = None
    instance_tags: dict[str, str] | None = None
    status: str = "PROVISIONING"
    created: datetime = field(default_factory=wire.now)
    changed: datetime = field(default_factory=wire.now)
    instances: list[Instance] = field(default_factory=list)
    source_error: str | None = None  # the provider's refusal of the last provisioning (no capacity)

    @property
    def alive(self) -> bool:
        return self.status != "TERMINATED"

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status, self.changed = status, wire.now()

    def live_instances(self) -> list[Instance]:
        return [i for i in self.instances if i.alive]

    def to_json(self) -> dict[str, Any]:
        return compact(
            {
                "id": self.id,
                "namespace": self.namespace,
                "name": self.name,
                "tag": self.tag,
                "createdTime": timestamp(self.created),
                "createdById": "ydid:app:000000:emulator",
                "createdFromId": self.template_id,
                "statusChangedTime": timestamp(self.changed),
                "status": self.status,
                "targetInstanceCount": self.target,
                "expectedInstanceCount": len(self.live_instances()),
                "maintainInstanceCount": False,
                "provisionStrategy": {
                    "type": wire.SINGLE_SOURCE_STRATEGY,
                    "sources": [{**self.source.source_json(), **self._source_status(), "id": self.source_id}],
                },
            }
        )

    def _source_status(self) -> dict[str, Any]:
        """The source's state as the platform reports it: ERRORED with the provider's message after a
        refused provisioning, else ACTIVE while it provides an instance."""
        if self.source_error is not None:
            return {"status": "ERRORED", "statusMessage": self.source_error}
        return {"status": "ACTIVE" if self.live_instances() else "INACTIVE"}

    def summary_json(self) -> dict[str, Any]:
        return compact(
            {
                "id": self.id,
                "namespace": self.namespace,
                "name": self.name,
                "tag": self.tag,
                "targetInstanceCount": self.target,
                "expectedInstanceCount": len(self.live_instances()),
                "aliveInstanceCount": sum(1 for i in self.instances if i.status == "RUNNING"),
                "createdTime": timestamp(self.created),
                "statusChangedTime": timestamp(self.changed),
                "status": self.status,
                "healthy": True,
            }
        )


@dataclass
class WorkerPool:
    id: str
    namespace: str
    name: str
    properties: dict[str, Any]
    requirement: ComputeRequirement  # every emulated pool is provisioned: one compute requirement each
    status: str = "PENDING"
    created: datetime = field(default_factory=wire.now)
    changed: datetime = field(default_factory=wire.now)
    idle_since: datetime | None = None

    @property
    def worker_tag(self) -> str | None:
        return self.properties.get("workerTag")

    @property
    def task_types(self) -> set[str]:
        return {"bash", "python"}

    @property
    def alive(self) -> bool:
        return self.status not in POOL_GONE

    def set_status(self, status: str) -> None:
        if status != self.status:
            self.status, self.changed = status, wire.now()

    def instances(self) -> list[Instance]:
        return self.requirement.instances

    def to_json(self) -> dict[str, Any]:
        nodes = [i for i in self.instances() if i.node_status]
        workers = [i for i in nodes if i.worker_status]
        return compact(
            {
                "type": wire.PROVISIONED_WORKER_POOL,
                "id": self.id,
                "name": self.name,
                "namespace": self.namespace,
                "createdTime": timestamp(self.created),
                "status": self.status,
                "statusChangedTime": timestamp(self.changed),
                "expectedNodeCount": len(self.requirement.live_instances()),
                "awaitingNodes": any(i.status == "PENDING" for i in self.instances()),
                "workerSummary": {
                    "statusCounts": dict(Counter(i.worker_status for i in workers)),
                    "claimedWorkerCount": sum(1 for i in workers if i.current_task),
                    "lastUpdatedTime": timestamp(self.changed),
                },
                "nodeSummary": {
                    "statusCounts": dict(Counter(i.node_status for i in nodes)),
                    "lastUpdatedTime": timestamp(self.changed),
                },
                "properties": self.properties,
                "computeRequirementId": self.requirement.id,
            }
        )

    def summary_json(self) -> dict[str, Any]:
        nodes = [i for i in self.instances() if i.node_status == "RUNNING"]
        return compact(
            {
                "id": self.id,
                "name": self.name,
                "namespace": self.namespace,
                "type": wire.PROVISIONED_WORKER_POOL,
                "registeredNodeCount": len(nodes),
                "registeredWorkerCount": len(nodes),
                "claimedWorkerCount": sum(1 for i in nodes if i.current_task),
                "workingWorkerCount": sum(1 for i in nodes if i.current_task),
                "status": self.status,
                "createdTime": timestamp(self.created),
                "statusChangedTime": timestamp(self.changed),
                "healthy": True,
            }
        )


@dataclass
class SourceTemplate:
    """A compute source template: the provider, region and instance type a template's instances come
    from, hence what they cost (the price list is keyed by these) and whether they are spot."""

    namespace: str
    name: str
    provider: str = "AWS"
    region: str = "eu-west-2"
    instance_type: str = "m5.large"
    spot: bool = False
    id: str = field(default_factory=lambda: wire.new_id("cst"))

    def source_json(self) -> dict[str, Any]:
        return {
            "type": wire.AWS_INSTANCES_SOURCE,
            "name": self.name,
            "provider": self.provider,
            "credential": "emulated-credential",
            "region": self.region,
            "securityGroupId": "sg-emulated",
            "instanceType": self.instance_type,
            "imageId": "ami-emulated",
            "spot": self.spot,
            "instancePricing": "SPOT_ONLY" if self.spot else "ON_DEMAND_ONLY",
            "limit": 0,
            "assignPublicIp": False,
            "specifyMinimum": False,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "description": "emulated source",
            "source": self.source_json(),
        }

    def summary_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "namespace": self.namespace,
            "description": "emulated source",
            "sourceType": wire.AWS_INSTANCES_SOURCE,
            "provider": self.provider,
        }


@dataclass
class Template:
    """A compute requirement template the emulator knows: `namespace/name`, also reachable by id. Its
    instances come from its first source (the emulator provisions from one source only)."""

    namespace: str
    name: str
    sources: list[SourceTemplate]
    id: str = field(default_factory=lambda: wire.new_id("crt"))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def strategy(self) -> str:
        return wire.SINGLE_SOURCE_STRATEGY if len(self.sources) == 1 else wire.WATERFALL_STRATEGY

    def to_json(self) -> dict[str, Any]:
        return {
            "type": wire.STATIC_TEMPLATE,
            "id": self.id,
            "namespace": self.namespace,
            "name": self.name,
            "description": "emulated template",
            "strategyType": self.strategy,
            "sources": [{"sourceTemplateId": source.id} for source in self.sources],
        }

    def summary_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "namespace": self.namespace,
            "name": self.name,
            "description": "emulated template",
            "strategyType": self.strategy,
            "type": wire.STATIC_TEMPLATE,
        }
