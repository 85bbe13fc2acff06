"""Every kind of emulator answer, deserialised by the real SDK: no server-assigned field may come back
empty (the SDK silently turns a malformed one into None), and the wire details the SDK relies on hold."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import requests
from yellowdog_client.model import (
    AutoShutdown,
    ComputeRequirementSearch,
    ComputeRequirementStatus,
    ComputeRequirementSummarySearch,
    ComputeRequirementTemplateUsage,
    InstanceSearch,
    NodeSearch,
    NodeWorkerTarget,
    ProvisionedWorkerPool,
    ProvisionedWorkerPoolProperties,
    RunSpecification,
    Task,
    TaskGroup,
    TaskSearch,
    TaskStatus,
    WorkerPoolSearch,
    WorkRequirement,
    WorkRequirementSearch,
    WorkRequirementStatus,
)
from yellowdog_client.model.exceptions import InvalidRequestException, NotAuthorisedException
from yellowdog_client.platform_client import PlatformClient

from raydog_core.testing.emulator import Emulator

TEMPLATE = "raydog/emulated"


def assert_server_fields_filled(entity: Any, where: str = "") -> None:
    """Every `field(init=False)` (what the server assigns) is set, recursively through nested models."""
    where = where or type(entity).__name__
    for item in dataclasses.fields(entity):
        value = getattr(entity, item.name, None)
        if not item.init and item.name not in (
            "errors",
            "resubmittedToTaskId",
            "resubmittedFromTaskId",
            "autoShutdownTime",
            "supportedOperations",
            "credentials",
        ):
            assert value is not None, f"{where}.{item.name} came back empty"
        if item.name == "provisionStrategy":
            continue  # compute sources are configuration the platform echoes, not entities it assigns
        for child in value if isinstance(value, list) else [value]:
            if dataclasses.is_dataclass(child) and not isinstance(child, type):
                assert_server_fields_filled(child, f"{where}.{item.name}")


@pytest.fixture(scope="module")
def client(yellowdog_emulator: Emulator) -> Iterator[PlatformClient]:
    client = yellowdog_emulator.platform_client()
    yield client
    client.close()


def test_every_response_round_trips(client: PlatformClient, yellowdog_emulator: Emulator) -> None:
    usage = ComputeRequirementTemplateUsage(
        templateId=TEMPLATE, requirementName="conf-pool", requirementNamespace="conf", targetInstanceCount=2
    )
    properties = ProvisionedWorkerPoolProperties(
        createNodeWorkers=NodeWorkerTarget.per_node(1),
        minNodes=0,
        maxNodes=2,
        workerTag="conf-pool",
        idleNodeShutdown=AutoShutdown(True, timedelta(minutes=3)),
        idlePoolShutdown=AutoShutdown(True, timedelta(0)),
    )
    pools, work, compute = client.worker_pool_client, client.work_client, client.compute_client
    provisioned = pools.provision_worker_pool(usage, properties)
    run = RunSpecification(
        taskTypes=["bash"], workerTags=["conf-pool"], namespaces=["conf"], taskTimeout=timedelta(hours=1)
    )
    requirement = work.add_work_requirement(
        WorkRequirement(
            namespace="conf", name="conf-wr", taskGroups=[TaskGroup(name="g1", runSpecification=run)]
        )
    )
    assert_server_fields_filled(requirement)
    requirement.taskGroups.append(TaskGroup(name="g2", runSpecification=run))
    requirement = work.update_work_requirement(requirement)
    assert [g.name for g in requirement.taskGroups] == ["g1", "g2"]
    big = "# padding to force a gzip body\n" * 120 + "sleep 60\n"  # > 2048 bytes: the SDK gzips it
    tasks = work.add_tasks_to_task_group_by_id(
        requirement.taskGroups[0].id,
        [Task(name=f"t{i}", taskType="bash", arguments=["taskdata.txt"], taskData=big) for i in range(2)],
    )
    deadline = time.monotonic() + 20
    while any(work.get_task_by_id(t.id).status != TaskStatus.EXECUTING for t in tasks):
        assert time.monotonic() < deadline, "tasks did not start"
        time.sleep(0.1)
    task = work.get_task_by_id(tasks[0].id)
    node = pools.get_node_by_worker_id(task.workerId)
    pool = pools.get_worker_pool_by_id(provisioned.id)
    assert isinstance(pool, ProvisionedWorkerPool) and pool.computeRequirementId
    instances = compute.get_instances(
        InstanceSearch(computeRequirementId=pool.computeRequirementId)
    ).list_all()
    assert node.details.instanceId in {i.id.instanceId for i in instances}
    answers = [
        work.get_work_requirement_by_id(requirement.id),
        work.get_work_requirement_by_name("conf", "conf-wr"),
        task,
        *work.get_tasks(
            TaskSearch(workRequirementId=requirement.id, statuses=[TaskStatus.EXECUTING])
        ).list_all(),
        node,
        pools.get_node_by_id(node.id),
        *pools.get_nodes(NodeSearch(workerPoolId=pool.id)).list_all(),
        pool,
        pools.get_worker_pool_by_name("conf", "conf-pool"),
        *pools.get_worker_pools(WorkerPoolSearch(namespace="conf")).list_all(),
        *instances,
        compute.get_compute_requirement_by_id(pool.computeRequirementId),
        compute.get_compute_requirement_by_name("conf", "conf-pool"),
        *compute.get_compute_requirements(ComputeRequirementSearch(namespace="conf")).list_all(),
        *compute.get_compute_requirement_summaries(
            ComputeRequirementSummarySearch(namespace="conf")
        ).list_all(),
        *work.get_work_requirements(WorkRequirementSearch(namespace="conf")).list_all(),
        compute.get_compute_requirement_template_by_name("raydog", "emulated"),
        *compute.find_all_compute_requirement_templates(),
        *client.namespaces_client.get_namespaces(_namespace_search()).list_all(),
    ]
    for answer in answers:
        assert_server_fields_filled(answer)
    assert yellowdog_emulator.task_output("t0") == ""  # the gzip body arrived whole: only `sleep` ran

    helper = work.get_work_requirement_helper_by_id(requirement.id)
    future = helper.when_requirement_status_is(WorkRequirementStatus.CANCELLED)  # server-sent events
    cancelled = work.cancel_work_requirement_by_id(requirement.id, abort=True)
    assert_server_fields_filled(cancelled)
    assert future.result(timeout=20).status == WorkRequirementStatus.CANCELLED
    with pytest.raises(requests.HTTPError, match="InvalidWorkRequirementStatusException"):
        work.cancel_work_requirement_by_id(requirement.id, abort=True)
    with pytest.raises(InvalidRequestException, match="already exists"):
        pools.provision_worker_pool(usage, properties)
    pools.shutdown_worker_pool_by_id(pool.id)
    terminated = compute.terminate_compute_requirement_by_id(pool.computeRequirementId)
    assert_server_fields_filled(terminated)
    assert terminated.status == ComputeRequirementStatus.TERMINATED
    assert yellowdog_emulator.wait_until_clean() == []


def test_pagination_stops_on_the_last_slice(client: PlatformClient, yellowdog_emulator: Emulator) -> None:
    from raydog_core.testing.emulator import routes

    previous, routes.PAGE_SIZE = routes.PAGE_SIZE, 2
    try:
        templates = [f"pages/t{i}" for i in range(5)]
        for key in templates:
            yellowdog_emulator.platform.add_template(key)
        from yellowdog_client.model import ComputeRequirementTemplateSearch

        found = client.compute_client.get_compute_requirement_templates(
            ComputeRequirementTemplateSearch()
        ).list_all()
        assert {f"{t.namespace}/{t.name}" for t in found} >= set(templates)
    finally:
        routes.PAGE_SIZE = previous


def test_wrong_key_is_not_authorised(yellowdog_emulator: Emulator) -> None:
    from yellowdog_client.model import ApiKey, ServicesSchema

    client = PlatformClient.create(ServicesSchema(defaultUrl=yellowdog_emulator.url + "/"), ApiKey("x", "y"))
    with pytest.raises(NotAuthorisedException):
        client.work_client.get_work_requirement_by_id("ydid:workreq:000000:nope")
    client.close()


def _namespace_search() -> Any:
    from yellowdog_client.model import NamespaceSearch

    return NamespaceSearch()
