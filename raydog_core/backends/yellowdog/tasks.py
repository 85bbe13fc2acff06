"""The Ray nodes' tasks: one `bash` task per node, whose task data is the node script.

A node's id is its task's name, chosen here before the task exists, so the script gets it as
RAYDOG_NODE_ID along with its `ray start` arguments. The application key's secret never goes into a
task: a launch whose environment holds it is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Sequence
from functools import partial

from yellowdog_client.model import Task, TaskGroup, TaskSearch, WorkRequirement
from yellowdog_client.model.exceptions import InvalidRequestException

from raydog_core import naming, node_env
from raydog_core.backends.base import HeadPorts, NodeLaunch, NodeRole
from raydog_core.backends.yellowdog import placement as node_placement
from raydog_core.backends.yellowdog.api import Api, present, worker_tag
from raydog_core.backends.yellowdog.requirements import TASK_TYPE
from raydog_core.backends.yellowdog.task_outputs import TaskOutputStore
from raydog_core.credentials import YellowDogCredentials
from raydog_core.errors import RayDogError
from raydog_core.spec import NodePlacement

TASK_ARGUMENTS = ["taskdata.txt"]  # the agent writes the task data to this file


class NodeTasks:
    """Starting, finding and cancelling the tasks that are a cluster's nodes."""

    def __init__(
        self,
        api: Api,
        credentials: YellowDogCredentials,
        placement: NodePlacement,
        outputs: TaskOutputStore | None,
        head_ports: Callable[[str], HeadPorts],
    ) -> None:
        """`head_ports`: the ports of a cluster's head, as the process that opened it chose them."""
        self._api = api
        self._credentials = credentials
        self._placement = placement
        self._outputs = outputs
        self._head_ports = head_ports

    def add(self, cluster_id: str, group: TaskGroup, launch: NodeLaunch, count: int) -> list[str]:
        names = [naming.node_name(group.name, secrets.token_hex(3)) for _ in range(count)]
        tasks = [self.task(cluster_id, name, launch) for name in names]
        group_id = present(group.id, "task group id")
        self._api.call(
            lambda: self._api.client.work_client.add_tasks_to_task_group_by_id(group_id, tasks), "add tasks"
        )
        return names

    def task(self, cluster_id: str, name: str, launch: NodeLaunch) -> Task:
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
        env.update(node_placement.observability_env(self._placement, launch, env))
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
        args = node_placement.node_args(self._placement, cluster_id, name, launch)
        if launch.role == NodeRole.HEAD:
            # The dashboard listens on the head's loopback only; clients reach it through an SSH tunnel.
            ports = self._head_ports(cluster_id)
            args += node_env.head_args(ports, include_dashboard=True, dashboard_host="127.0.0.1")
        return args

    def cancel(self, tasks: Iterable[Task]) -> None:
        work = self._api.client.work_client
        for task in tasks:
            if task.status is not None and task.status.finished:
                continue
            try:
                self._api.call(
                    partial(work.cancel_task_by_id, present(task.id, "task id"), True), "cancel task"
                )
            except InvalidRequestException:
                pass  # it finished meanwhile

    def of_cluster(self, cluster_id: str) -> list[Task]:
        return self._list(TaskSearch(workRequirementId=cluster_id))

    def of_pool(self, cluster_id: str, requirement: WorkRequirement, pool_name: str | None) -> list[Task]:
        """The tasks of every task group of the cluster's that runs on this pool."""
        group_ids = [g.id for g in requirement.taskGroups or [] if worker_tag(g) == pool_name]
        tasks: list[Task] = []
        for group_id in group_ids:
            tasks += self._list(TaskSearch(workRequirementId=cluster_id, taskGroupId=group_id))
        return tasks

    def unfinished(self, cluster_id: str, groups: Sequence[TaskGroup]) -> int:
        count = 0
        for group in groups:
            tasks = self._list(TaskSearch(workRequirementId=cluster_id, taskGroupId=group.id))
            count += sum(1 for task in tasks if task.status is None or not task.status.finished)
        return count

    def _list(self, search: TaskSearch) -> list[Task]:
        return self._api.call(lambda: self._api.client.work_client.get_tasks(search).list_all(), "list tasks")
