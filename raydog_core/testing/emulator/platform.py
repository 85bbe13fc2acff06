"""The emulated platform: entities, the state machines that move them, and the API operations.

One re-entrant lock guards all state. API handlers and the ticker (a thread that boots instances,
allocates tasks to idle workers, notices exits and timeouts and applies idle shutdowns) both take it,
so every answer is a consistent snapshot. Choices where the real platform's behaviour is unknown are
module constants, named and documented here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any

from raydog_core import processes
from raydog_core.testing.emulator import wire
from raydog_core.testing.emulator.agent import Agent
from raydog_core.testing.emulator.billing import DEFAULT_PRICES, Allowance, InstancePrice
from raydog_core.testing.emulator.entities import (
    TASK_FINISHED,
    TASK_IN_PROGRESS,
    TASK_WAITING,
    ComputeRequirement,
    Instance,
    SourceTemplate,
    Task,
    TaskGroup,
    Template,
    WorkerPool,
    WorkRequirement,
)
from raydog_core.testing.emulator.faults import Faults
from raydog_core.testing.emulator.wire import invalid, not_found

log = logging.getLogger("raydog.emulator")

# Unknown real-platform behaviour, decided here (yellowdog-wire.md §8):
LOST_TASK_STATUS = "FAILED"  # a task whose instance dies or is terminated fails with ALLOCATION_LOST
LOST_TASK_ERROR = "ALLOCATION_LOST"
NEW_GROUP_STATUS = "PENDING"  # a task group before any task runs
# Names are unique among live resources only: a finished requirement or a terminated pool frees its name.


class Platform:
    """All emulated state and every operation on it; the HTTP layer only translates requests."""

    def __init__(self, agent: Agent, faults: Faults, templates: Iterable[str] = ()) -> None:
        self.agent = agent
        self.faults = faults
        self.lock = threading.RLock()
        self.requirements: dict[str, WorkRequirement] = {}
        self.groups: dict[str, TaskGroup] = {}
        self.tasks: dict[str, Task] = {}
        self.pools: dict[str, WorkerPool] = {}
        self.computes: dict[str, ComputeRequirement] = {}
        self.instances: dict[str, Instance] = {}  # by node id
        self.templates: dict[str, Template] = {}
        self.source_templates: dict[str, SourceTemplate] = {}
        self.prices: list[InstancePrice] = list(DEFAULT_PRICES)
        self.allowances: dict[str, Allowance] = {}
        self.namespaces: dict[str, str] = {}  # name -> id
        self.strict_templates = True
        self.on_change: Callable[[], None] = lambda: None
        for key in templates:
            self.add_template(key)

    # -- templates and namespaces -------------------------------------------------------------------

    def add_template(
        self,
        key: str,
        *,
        instance_type: str = "m5.large",
        region: str = "eu-west-2",
        spot: bool = False,
        provider: str = "AWS",
        then_on_demand: bool = False,
    ) -> Template:
        """A template with one source template of its own (`<name>-source`) for these instances; with
        `then_on_demand`, a second one (`<name>-on-demand`) of the same machines on demand, after the
        first in a waterfall: spot-first when `spot`. Instances come from the first source."""
        namespace, _, name = key.rpartition("/")
        namespace = namespace or "default"
        sources = [SourceTemplate(namespace, f"{name}-source", provider, region, instance_type, spot)]
        if then_on_demand:
            sources.append(SourceTemplate(namespace, f"{name}-on-demand", provider, region, instance_type))
        template = Template(namespace, name, sources)
        with self.lock:
            for source in sources:
                self.source_templates[source.id] = source
            self.templates[template.key] = template
        return template

    def source_template(self, ref: str) -> SourceTemplate:
        with self.lock:
            for source in self.source_templates.values():
                if ref in (source.id, f"{source.namespace}/{source.name}"):
                    return source
        raise not_found("Compute source template", ref)

    # -- prices and allowances ----------------------------------------------------------------------

    def set_price(self, price: InstancePrice) -> None:
        """Add a price, or replace the one with the same provider, region, type and usage."""
        key = (price.provider, price.region, price.instance_type, price.usage_type)
        with self.lock:
            self.prices = [
                p for p in self.prices if (p.provider, p.region, p.instance_type, p.usage_type) != key
            ] + [price]

    def search_prices(self, query: dict[str, list[str]]) -> list[InstancePrice]:
        with self.lock:
            return [price for price in self.prices if price.matches(query)]

    def add_allowance(self, body: Any) -> Allowance:
        allowance = Allowance.create(body)
        with self.lock:
            self.allowances[allowance.id] = allowance
        return allowance

    def allowance(self, allowance_id: str) -> Allowance:
        found = self.allowances.get(allowance_id)
        if found is None:
            raise not_found("Allowance", allowance_id)
        return found

    def delete_allowance(self, allowance_id: str) -> None:
        with self.lock:
            self.allowance(allowance_id)
            del self.allowances[allowance_id]

    def boost_allowance(self, allowance_id: str, hours: int) -> Allowance:
        if hours <= 0:
            raise invalid("Boost hours must be positive")
        with self.lock:
            allowance = self.allowance(allowance_id)
            allowance.spec["boostHours"] = int(allowance.spec.get("boostHours") or 0) + hours
            allowance.exhausted_at = None
            return allowance

    def search_allowances(self, query: dict[str, list[str]]) -> list[Allowance]:
        with self.lock:
            return [a for a in self.allowances.values() if a.matches(query)]

    def allowance_json(self, allowance: Allowance) -> dict[str, Any]:
        with self.lock:
            return allowance.to_json(list(self.instances.values()), wire.now())

    def exhausted_allowances(self, compute: ComputeRequirement) -> list[Allowance]:
        """Allowances that cover this compute requirement and have no hours left."""
        now = wire.now()
        with self.lock:
            instances = list(self.instances.values())
            return [
                a
                for a in self.allowances.values()
                if a.covers(compute) and a.window(now)[0] <= now and a.remaining_hours(instances, now) <= 0
            ]

    def template(self, ref: str) -> Template:
        with self.lock:
            for template in self.templates.values():
                if ref in (template.id, template.key):
                    return template
            if not self.strict_templates:
                return self.add_template(ref)
        raise not_found("Compute requirement template", ref)

    def namespace_id(self, name: str) -> str:
        return self.namespaces.setdefault(name, wire.new_id("ns"))

    # -- work requirements --------------------------------------------------------------------------

    def add_requirement(self, body: dict[str, Any]) -> WorkRequirement:
        namespace, name = _required(body, "namespace"), _required(body, "name")
        with self.lock:
            if self._live_requirement(namespace, name):
                raise invalid(f"Work requirement '{namespace}/{name}' already exists")
            requirement = WorkRequirement(
                wire.new_id("workreq"), namespace, name, body.get("tag"), body.get("priority", 0)
            )
            self.namespace_id(namespace)
            self._merge_groups(requirement, body.get("taskGroups") or [])
            self.requirements[requirement.id] = requirement
            return requirement

    def update_requirement(self, body: dict[str, Any]) -> WorkRequirement:
        with self.lock:
            requirement = self.requirement(_required(body, "id"))
            if requirement.finished or requirement.status in ("CANCELLING", "FINISHING"):
                raise invalid(
                    f"Work requirement '{requirement.name}' is {requirement.status} and cannot be updated"
                )
            requirement.tag = body.get("tag", requirement.tag)
            requirement.priority = body.get("priority", requirement.priority)
            self._merge_groups(requirement, body.get("taskGroups") or [])
            return requirement

    def _merge_groups(self, requirement: WorkRequirement, groups: list[dict[str, Any]]) -> None:
        names = {group.name for group in requirement.groups}
        for spec in groups:
            if spec.get("id"):
                continue  # existing groups keep their server state
            name = _required(spec, "name")
            if not (spec.get("runSpecification") or {}).get("taskTypes"):
                raise invalid(f"Task group '{name}' needs runSpecification.taskTypes")
            if name in names:
                raise invalid(f"Task group '{name}' already exists in work requirement '{requirement.name}'")
            names.add(name)
            group = TaskGroup(wire.new_id("taskgrp"), requirement, _server_free(spec), NEW_GROUP_STATUS)
            requirement.groups.append(group)
            self.groups[group.id] = group

    def requirement(self, requirement_id: str) -> WorkRequirement:
        found = self.requirements.get(requirement_id)
        if found is None:
            raise not_found("Work requirement", requirement_id)
        return found

    def requirement_by_name(self, namespace: str, name: str) -> WorkRequirement:
        with self.lock:
            found = self._live_requirement(namespace, name) or next(
                (
                    r
                    for r in reversed(self.requirements.values())
                    if (r.namespace, r.name) == (namespace, name)
                ),
                None,
            )
        if found is None:
            raise not_found("Work requirement", f"{namespace}/{name}")
        return found

    def _live_requirement(self, namespace: str, name: str) -> WorkRequirement | None:
        return next(
            (
                r
                for r in self.requirements.values()
                if (r.namespace, r.name) == (namespace, name) and not r.finished
            ),
            None,
        )

    def transition_requirement(self, requirement_id: str, status: str, abort: bool) -> WorkRequirement:
        to_stop: list[Task] = []
        with self.lock:
            requirement = self.requirement(requirement_id)
            if requirement.finished:
                raise wire.bad_status(f"Work requirement '{requirement.name}' is {requirement.status}")
            if status == "CANCELLING":
                requirement.set_status("CANCELLING")
                for group in requirement.groups:
                    if not group.finished:
                        group.set_status("CANCELLING")
                    to_stop += self._cancel_tasks(group.tasks, abort)
            elif status in ("HELD", "RUNNING", "FINISHING"):
                requirement.set_status(status)
            else:
                raise invalid(f"Cannot transition a work requirement to {status}")
        self._stop(to_stop, "ABORTED")
        with self.lock:
            self._roll_up()
            return requirement

    def _cancel_tasks(self, tasks: Iterable[Task], abort: bool) -> list[Task]:
        """Cancel waiting tasks now; return the in-progress ones to abort (when `abort`)."""
        in_progress = []
        for task in tasks:
            if task.status in TASK_WAITING:
                task.status, task.finished = "CANCELLED", wire.now()
            elif task.status in TASK_IN_PROGRESS and abort:
                task.abort_requested = wire.now()
                in_progress.append(task)
        return in_progress

    def search_requirements(self, query: dict[str, list[str]]) -> list[WorkRequirement]:
        with self.lock:
            return [
                r
                for r in self.requirements.values()
                if _matches(query, "namespace", r.namespace)
                and _matches(query, "namespaces", r.namespace)
                and _matches(query, "name", r.name)
                and _matches(query, "tag", r.tag)
                and _matches(query, "statuses", r.status)
            ]

    # -- tasks --------------------------------------------------------------------------------------

    def add_tasks(self, group_id: str, specs: list[dict[str, Any]]) -> list[Task]:
        with self.lock:
            group = self.groups.get(group_id)
            if group is None:
                raise not_found("Task group", group_id)
            requirement = group.requirement
            if requirement.finished or requirement.status in ("CANCELLING", "FINISHING"):
                raise invalid(
                    f"Cannot add tasks: work requirement '{requirement.name}' is {requirement.status}"
                )
            if group.finished or group.status in ("CANCELLING", "FAILING", "FINISHING"):
                raise invalid(f"Cannot add tasks: task group '{group.name}' is {group.status}")
            template = group.spec.get("taskTemplate") or {}
            task_types = group.run.get("taskTypes") or []
            added = []
            for spec in specs:
                spec = {**{k: v for k, v in template.items() if v is not None}, **_server_free(spec)}
                if spec.get("taskType") not in task_types:
                    raise invalid(
                        f"Task type {spec.get('taskType')!r} is not one of the task group's {task_types}"
                    )
                if not self.agent.supports(spec.get("taskType")):
                    raise invalid(f"Task type {spec.get('taskType')!r} is not supported by the emulator")
                task = Task(wire.new_id("task", len(self.tasks) + 1), group, spec)
                group.tasks.append(task)
                self.tasks[task.id] = task
                added.append(task)
            if group.status == "PENDING":
                group.set_status("RUNNING")
            return added

    def add_tasks_by_name(
        self, namespace: str, requirement: str, group: str, specs: list[dict[str, Any]]
    ) -> list[Task]:
        with self.lock:
            found = self.requirement_by_name(namespace, requirement)
            match = next((g for g in found.groups if g.name == group), None)
            if match is None:
                raise not_found("Task group", f"{namespace}/{requirement}/{group}")
            return self.add_tasks(match.id, specs)

    def task(self, task_id: str) -> Task:
        found = self.tasks.get(task_id)
        if found is None:
            raise not_found("Task", task_id)
        return found

    def cancel_task(self, task_id: str, abort: bool) -> Task:
        with self.lock:
            task = self.task(task_id)
            if task.status in TASK_FINISHED:
                raise invalid(f"Task '{task_id}' is already {task.status}")
            to_stop = self._cancel_tasks([task], abort)
        self._stop(to_stop, "ABORTED")
        return task

    def search_tasks(self, query: dict[str, list[str]]) -> list[Task]:
        with self.lock:
            return [
                t
                for t in self.tasks.values()
                if _matches(query, "workRequirementId", t.group.requirement.id)
                and _matches(query, "taskGroupId", t.group.id)
                and _matches(query, "name", t.name)
                and _matches(query, "tag", t.spec.get("tag"))
                and _matches(query, "statuses", t.status)
            ]

    # -- worker pools and compute requirements ------------------------------------------------------

    def provision_pool(self, body: dict[str, Any]) -> WorkerPool:
        usage = body.get("requirementTemplateUsage") or {}
        properties = body.get("provisionedProperties") or {}
        name = _required(usage, "requirementName")
        namespace = usage.get("requirementNamespace") or "default"
        template = self.template(_required(usage, "templateId"))
        count = int(usage.get("targetInstanceCount") or 0)
        if properties.get("maxNodes") is not None:
            count = min(count, int(properties["maxNodes"]))
        with self.lock:
            if any(p.alive and (p.namespace, p.name) == (namespace, name) for p in self.pools.values()):
                raise invalid(f"Worker pool '{namespace}/{name}' already exists")
            if any(c.alive and (c.namespace, c.name) == (namespace, name) for c in self.computes.values()):
                raise invalid(f"Compute requirement '{namespace}/{name}' already exists")
            compute = ComputeRequirement(
                wire.new_id("compreq"),
                namespace,
                name,
                usage.get("requirementTag"),
                usage["templateId"] if usage["templateId"] else template.key,
                count,
                wire.new_id("compsrc"),
                template.sources[0],
                usage.get("imagesId"),
                usage.get("userData"),
                usage.get("instanceTags"),
            )
            exhausted = self.exhausted_allowances(compute)
            if exhausted:
                names = ", ".join(repr(a.spec.get("description") or a.id) for a in exhausted)
                raise invalid(f"Cannot provision '{namespace}/{name}': allowance {names} is exhausted")
            self.namespace_id(namespace)
            pool = WorkerPool(wire.new_id("wrkrpool"), namespace, name, properties, compute)
            self.computes[compute.id] = compute
            self.pools[pool.id] = pool
            self._add_instances(pool, count)
            return pool

    def _add_instances(self, pool: WorkerPool, count: int) -> None:
        compute = pool.requirement
        if count and self.faults.has_no_capacity(pool.name):
            compute.source_error = (
                f"InsufficientInstanceCapacity: no {compute.source.instance_type} capacity in "
                f"{compute.source.region} for {count} instance(s) (emulated)"
            )
            return
        delay = timedelta(seconds=self.faults.boot_delay(pool.name))
        for _ in range(count):
            instance = Instance(wire.next_number(), compute.source_id, compute, pool)
            instance.boots_at = instance.created + delay
            compute.instances.append(instance)
            self.instances[instance.node_id] = instance
        if count:
            compute.set_status("PROVISIONING")

    def pool(self, pool_id: str) -> WorkerPool:
        found = self.pools.get(pool_id)
        if found is None:
            raise not_found("Worker pool", pool_id)
        return found

    def pool_by_name(self, namespace: str, name: str) -> WorkerPool:
        with self.lock:
            matches = [p for p in self.pools.values() if (p.namespace, p.name) == (namespace, name)]
        live = [p for p in matches if p.alive]
        if not (live or matches):
            raise not_found("Worker pool", f"{namespace}/{name}")
        return (live or matches)[-1]

    def search_pools(self, query: dict[str, list[str]]) -> list[WorkerPool]:
        with self.lock:
            return [
                p
                for p in self.pools.values()
                if _matches(query, "namespace", p.namespace)
                and _matches(query, "namespaces", p.namespace)
                and _matches(query, "name", p.name)
                and _matches(query, "statuses", p.status)
            ]

    def resize_pool(self, pool_id: str, size: int) -> WorkerPool:
        to_stop: list[Instance] = []
        with self.lock:
            pool = self.pool(pool_id)
            if not pool.alive:
                raise invalid(f"Worker pool '{pool.name}' is {pool.status}")
            live = pool.requirement.live_instances()
            if size > len(live) and self.exhausted_allowances(pool.requirement):
                raise invalid(f"Cannot grow worker pool '{pool.name}': an allowance covering it is exhausted")
            if size > len(live):
                self._add_instances(pool, size - len(live))
            else:
                idle_first = sorted(live, key=lambda i: i.current_task is not None)
                to_stop = idle_first[: len(live) - size]
            pool.requirement.target = size
        self._terminate_instances(to_stop)
        return pool

    def shutdown_pool(self, pool_id: str) -> WorkerPool:
        with self.lock:
            pool = self.pool(pool_id)
            if pool.alive:
                pool.set_status("SHUTDOWN")
        self.terminate_compute(pool.requirement.id)
        return pool

    def compute(self, compute_id: str) -> ComputeRequirement:
        found = self.computes.get(compute_id)
        if found is None:
            raise not_found("Compute requirement", compute_id)
        return found

    def compute_by_name(self, namespace: str, name: str) -> ComputeRequirement:
        with self.lock:
            matches = [c for c in self.computes.values() if (c.namespace, c.name) == (namespace, name)]
        if not matches:
            raise not_found("Compute requirement", f"{namespace}/{name}")
        return ([c for c in matches if c.alive] or matches)[-1]

    def search_computes(self, query: dict[str, list[str]]) -> list[ComputeRequirement]:
        with self.lock:
            return [
                c
                for c in self.computes.values()
                if _matches(query, "namespace", c.namespace)
                and _matches(query, "name", c.name)
                and _matches(query, "tag", c.tag)
                and _matches(query, "statuses", c.status)
            ]

    def transition_compute(self, compute_id: str, status: str) -> ComputeRequirement:
        if status == "TERMINATED":
            return self.terminate_compute(compute_id)
        with self.lock:
            compute = self.compute(compute_id)
            raise invalid(
                f"The emulator only supports the TERMINATED transition (asked {status} of {compute.name})"
            )

    def terminate_compute(self, compute_id: str) -> ComputeRequirement:
        with self.lock:
            compute = self.compute(compute_id)
            if compute.alive:
                compute.set_status("TERMINATING")
            instances = compute.live_instances()
        self._terminate_instances(instances)
        with self.lock:
            compute.set_status("TERMINATED")
            for pool in self.pools.values():
                if pool.requirement is compute and pool.status != "TERMINATED":
                    pool.set_status("TERMINATED")
            self._roll_up()
        return compute

    def terminate_instances(self, compute_id: str, instance_ids: list[str]) -> None:
        with self.lock:
            compute = self.compute(compute_id)
            chosen = [i for i in compute.live_instances() if i.instance_id in instance_ids]
        self._terminate_instances(chosen)

    def kill_instance(self, instance: Instance) -> None:
        """Fault injection: the machine dies without anyone asking (its agent uploads nothing)."""
        self._terminate_instances([instance], lost=True)

    def _terminate_instances(self, instances: list[Instance], lost: bool = False) -> None:
        """Stop the instances' task processes, fail their tasks and take their nodes away."""
        with self.lock:
            victims = [i.current_task for i in instances if i.current_task is not None]
            for instance in instances:
                instance.set_status("TERMINATING")
        self._stop(victims, LOST_TASK_STATUS, LOST_TASK_ERROR, upload=not lost)
        with self.lock:
            for instance in instances:
                instance.set_status("TERMINATED")
                if instance.node_status:
                    instance.node_status = "TERMINATED"
                    instance.worker_status = "SHUTDOWN"
                instance.deregistered = wire.now()
                instance.current_task = None
            self._roll_up()

    def instance_by_node(self, node_id: str) -> Instance:
        found = self.instances.get(node_id)
        if found is None or not found.node_status:
            raise not_found("Node", node_id)
        return found

    def instance_by_worker(self, worker_id: str) -> Instance:
        with self.lock:
            found = next((i for i in self.instances.values() if i.worker_id == worker_id), None)
        if found is None or not found.node_status:
            raise not_found("Worker", worker_id)
        return found

    def search_instances(self, query: dict[str, list[str]]) -> list[Instance]:
        with self.lock:
            return [
                i
                for i in self.instances.values()
                if _matches(query, "computeRequirementId", i.requirement.id)
                and _matches(query, "computeSourceId", i.source_id)
                and _matches(query, "statuses", i.status)
                and _matches(query, "privateIpAddress", i.ip)
            ]

    def search_nodes(self, query: dict[str, list[str]]) -> list[Instance]:
        with self.lock:
            return [
                i
                for i in self.instances.values()
                if i.node_status
                and _matches(query, "workerPoolId", i.pool.id)
                and _matches(query, "statuses", i.node_status)
                and _matches(query, "instanceId", i.instance_id)
                and _matches(query, "workerTag", i.pool.worker_tag)
            ]

    def shutdown_node(self, node_id: str) -> Instance:
        instance = self.instance_by_node(node_id)
        self._terminate_instances([instance])
        return instance

    # -- stopping processes (outside the lock: a stop waits for a grace period) ---------------------

    def _stop(
        self, tasks: list[Task], status: str, error_type: str | None = None, upload: bool = True
    ) -> None:
        if not tasks:
            return
        with self.lock:
            for task in tasks:
                task.stopping = True
        self.agent.stop(tasks, upload=upload)
        with self.lock:
            for task in tasks:
                if task.status in TASK_FINISHED:
                    continue
                ended = True
                if status == "FAILED":
                    ended = task.fail(error_type or "UNKNOWN_ERROR", f"task stopped: {error_type}")
                else:
                    task.status = status
                self._end_attempt(task, ended)
            self._roll_up()

    def _release(self, task: Task) -> None:
        instance = task.instance
        if instance is not None and instance.current_task is task:
            instance.current_task = None
            instance.idle_since = wire.now()

    def _end_attempt(self, task: Task, ended: bool) -> None:
        """The task's attempt is over: it has finished (`ended`), or it waits for its retry elsewhere."""
        self._release(task)
        if ended:
            task.finished = wire.now()
        else:
            self.agent.forget(task)
            task.instance, task.stopping = None, False

    # -- the ticker ---------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance every state machine by one step (called every few tens of milliseconds)."""
        now = wire.now()
        timed_out: list[Task] = []
        idle: list[Instance] = []
        idle_pools: list[WorkerPool] = []
        with self.lock:
            self._boot(now)
            self._allocate(now)
            self._collect_exits(now)
            for task in self.tasks.values():
                if (
                    task.status == "EXECUTING"
                    and task.timeout is not None
                    and task.started is not None  # set with EXECUTING
                    and now - task.started >= task.timeout
                ):
                    timed_out.append(task)
            idle = self._idle_nodes(now) + self._over_allowance(now)
            idle_pools = self._idle_pools(now)
            self._roll_up()
        if timed_out:
            self._stop(timed_out, "FAILED", "TIMED_OUT")
        if idle:
            self._terminate_instances(idle)
        for pool in idle_pools:
            log.info("emulator: idle pool %s/%s shut down", pool.namespace, pool.name)
            self.shutdown_pool(pool.id)
        self.on_change()

    def _boot(self, now: Any) -> None:
        for compute in self.computes.values():
            for instance in compute.instances:
                if instance.status == "PENDING" and instance.boots_at <= now:
                    instance.set_status("RUNNING")
                    instance.node_status, instance.worker_status = "RUNNING", "RUNNING"
                    instance.registered = instance.idle_since = now
            if compute.status in ("PROVISIONING", "STARTING") and all(
                i.status != "PENDING" for i in compute.instances
            ):
                compute.set_status("RUNNING")

    def _allocate(self, now: Any) -> None:
        free = [
            i
            for i in self.instances.values()
            if i.status == "RUNNING"
            and i.current_task is None
            and i.pool.alive
            and i.node_status == "RUNNING"
        ]
        if not free:
            return
        for requirement in self.requirements.values():
            if requirement.status != "RUNNING":
                continue
            for group in requirement.groups:
                if group.finished or group.status not in ("PENDING", "RUNNING"):
                    continue
                for task in group.tasks:
                    if task.status != "READY":
                        continue
                    instance = next((i for i in free if _serves(i, group, requirement, task)), None)
                    if instance is None:
                        break
                    free.remove(instance)
                    self._start(task, instance, now)
                    if not free:
                        return

    def _start(self, task: Task, instance: Instance, now: Any) -> None:
        task.instance, instance.current_task = instance, task
        task.status, task.started = "EXECUTING", now
        task.group.set_status("RUNNING")
        try:
            task.process = self.agent.start(task, instance, fail=self.faults.task_fails(task.name))
        except OSError as error:
            self._end_attempt(task, task.fail("EXECUTION_ERROR", f"could not start the task: {error}"))

    def _collect_exits(self, now: Any) -> None:
        for task in self.tasks.values():
            if task.status != "EXECUTING" or task.process is None or task.stopping:
                continue
            code = self.agent.exit_code(task)
            if code is None:
                continue
            ended = True
            if code == 0:
                task.status = "COMPLETED"
            else:
                ended = task.fail("PROCESS_NON_ZERO_EXIT", f"task process exited with code {code}", code)
            self.agent.finished(task, code)
            self._end_attempt(task, ended)

    def _over_allowance(self, now: Any) -> list[Instance]:
        """Instances a hard allowance ends: it is exhausted and its grace period has passed."""
        if not self.allowances:
            return []
        instances = list(self.instances.values())
        chosen: list[Instance] = []
        for allowance in self.allowances.values():
            if allowance.remaining_hours(instances, now) > 0:
                allowance.exhausted_at = None
                continue
            allowance.exhausted_at = allowance.exhausted_at or now
            if allowance.hard and now - allowance.exhausted_at >= allowance.grace:
                chosen += [
                    i for i in instances if i.alive and allowance.covers(i.requirement) and i not in chosen
                ]
        if chosen:
            log.info("emulator: a hard allowance is exhausted: terminating %d instance(s)", len(chosen))
        return chosen

    def _idle_nodes(self, now: Any) -> list[Instance]:
        chosen = []
        for instance in self.instances.values():
            if instance.status != "RUNNING" or instance.current_task is not None or not instance.pool.alive:
                continue
            timeout = _auto_shutdown(instance.pool.properties.get("idleNodeShutdown"))
            if timeout is None or now - instance.idle_since < timeout:
                continue
            if self._has_waiting_work(instance.pool):
                continue  # a node that booted before its task arrived is not idle
            chosen.append(instance)
        return chosen

    def _idle_pools(self, now: Any) -> list[WorkerPool]:
        chosen = []
        for pool in self.pools.values():
            if not pool.alive:
                continue
            busy = any(
                i.status == "PENDING" or i.current_task for i in pool.instances()
            ) or self._has_waiting_work(pool)
            if busy:
                pool.idle_since = None
                continue
            pool.idle_since = pool.idle_since or now
            timeout = _auto_shutdown(pool.properties.get("idlePoolShutdown"))
            if (
                timeout is not None
                and now - pool.idle_since >= timeout
                and not any(i.status == "RUNNING" for i in pool.instances())
            ):
                chosen.append(pool)
        return chosen

    def _has_waiting_work(self, pool: WorkerPool) -> bool:
        for requirement in self.requirements.values():
            if requirement.status != "RUNNING":
                continue
            for group in requirement.groups:
                waiting = not group.finished and any(t.status == "READY" for t in group.tasks)
                if waiting and _pool_matches(pool, group, requirement):
                    return True
        return False

    def _roll_up(self) -> None:
        """Derive task group, work requirement and pool statuses from their parts."""
        for requirement in self.requirements.values():
            if requirement.finished:
                continue
            for group in requirement.groups:
                _roll_up_group(group)
            in_progress = any(t.status in TASK_IN_PROGRESS for t in requirement.tasks())
            if requirement.status == "CANCELLING" and not in_progress:
                requirement.set_status("CANCELLED")
            elif (
                requirement.status in ("RUNNING", "FINISHING")
                and requirement.groups
                and all(g.finished for g in requirement.groups)
            ):
                failed = any(g.status == "FAILED" for g in requirement.groups)
                requirement.set_status("FAILED" if failed else "COMPLETED")
        for pool in self.pools.values():
            if not pool.alive:
                continue
            nodes = [i for i in pool.instances() if i.node_status == "RUNNING"]
            if any(i.current_task for i in nodes):
                pool.set_status("RUNNING")
            elif nodes:
                pool.set_status("IDLE")
            elif any(i.node_status for i in pool.instances()):
                pool.set_status("EMPTY")

    # -- leak accounting ----------------------------------------------------------------------------

    def live_resources(self) -> list[str]:
        with self.lock:
            leaks = [
                f"work requirement {r.namespace}/{r.name} ({r.status})"
                for r in self.requirements.values()
                if not r.finished
            ]
            leaks += [
                f"worker pool {p.namespace}/{p.name} ({p.status})" for p in self.pools.values() if p.alive
            ]
            leaks += [
                f"compute requirement {c.namespace}/{c.name} ({c.status})"
                for c in self.computes.values()
                if c.alive
            ]
            leaks += [
                f"instance {i.instance_id} of {i.requirement.name} ({i.status})"
                for i in self.instances.values()
                if i.alive
            ]
            leaks += [f"allowance {a.spec.get('description') or a.id}" for a in self.allowances.values()]
            refs = [t.process for t in self.tasks.values() if t.process is not None]
        leaks += [f"process {p.pid} ({_process_name(p)})" for p in processes.session_members(refs)]
        return leaks

    def stop_everything(self) -> list[str]:
        """Terminate every compute requirement and cancel every work requirement (emulator shut-down)."""
        with self.lock:
            requirements = [r.id for r in self.requirements.values() if not r.finished]
            computes = [c.id for c in self.computes.values() if c.alive]
        for requirement_id in requirements:
            try:
                self.transition_requirement(requirement_id, "CANCELLING", abort=True)
            except wire.ApiError:
                pass
        for compute_id in computes:
            self.terminate_compute(compute_id)
        with self.lock:
            for pool in self.pools.values():
                if pool.alive:
                    pool.set_status("TERMINATED")
            refs = [t.process for t in self.tasks.values() if t.process is not None]
        return processes.stop_sessions(refs)


def _roll_up_group(group: TaskGroup) -> None:
    if group.finished or not group.tasks:
        if group.status == "CANCELLING" and not group.tasks:
            group.set_status("CANCELLED")
        return
    statuses = [t.status for t in group.tasks]
    in_progress = any(s in TASK_IN_PROGRESS for s in statuses)
    any_failed = "FAILED" in statuses
    if group.status == "CANCELLING":
        if not in_progress:
            for task in group.tasks:
                if task.status in TASK_WAITING:
                    task.status = "CANCELLED"
            group.set_status("CANCELLED")
        return
    if any_failed and group.spec.get("finishIfAnyTaskFailed"):
        for task in group.tasks:
            if task.status in TASK_WAITING:
                task.status, task.finished = "DISCARDED", wire.now()
        group.set_status("FAILING" if in_progress else "FAILED")
        return
    if all(s in TASK_FINISHED for s in statuses) and group.spec.get("finishIfAllTasksFinished", True):
        group.set_status("FAILED" if any_failed else "COMPLETED")


def _serves(instance: Instance, group: TaskGroup, requirement: WorkRequirement, task: Task) -> bool:
    return (
        _pool_matches(instance.pool, group, requirement)
        and task.spec.get("taskType") in instance.pool.task_types
    )


def _pool_matches(pool: WorkerPool, group: TaskGroup, requirement: WorkRequirement) -> bool:
    run = group.run
    if run.get("workerTags") and pool.worker_tag not in run["workerTags"]:
        return False
    return not (run.get("namespaces") and pool.namespace not in run["namespaces"])


def _auto_shutdown(setting: dict[str, Any] | None) -> timedelta | None:
    if not setting or not setting.get("enabled"):
        return None
    return wire.parse_duration(setting.get("timeout")) or timedelta(0)


def _required(body: dict[str, Any], key: str) -> Any:
    value = body.get(key)
    if value in (None, ""):
        raise invalid(f"'{key}' is required")
    return value


_SERVER_FIELDS = {
    "id",
    "status",
    "statusChangedTime",
    "taskSummary",
    "createdTime",
    "retryCount",
    "taskGroupId",
    "nodeId",
    "workerId",
    "errors",
    "resubmittedToTaskId",
    "resubmittedFromTaskId",
}


def _server_free(spec: dict[str, Any]) -> dict[str, Any]:
    """A client's entity without the fields only the server sets."""
    return {k: v for k, v in spec.items() if k not in _SERVER_FIELDS and v is not None}


def _matches(query: dict[str, list[str]], key: str, value: Any) -> bool:
    wanted = query.get(key)
    return not wanted or value in wanted


def _process_name(proc: Any) -> str:
    try:
        return " ".join(proc.cmdline()[:3])
    except Exception:  # noqa: BLE001 - the process may be gone by now
        return "?"
