"""Every kind of emulator answer, deserialised by the real SDK: no server-assigned field may come back
empty (the SDK silently turns a malformed one into None), and the wire details the SDK relies on hold."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
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
    TaskData,
    TaskDataOutput,
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
        if item.name in ("provisionStrategy", "source"):
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


def test_prices_and_source_templates_round_trip(client: PlatformClient) -> None:
    """A template's source says what its instances are; the price list says what they cost per hour."""
    from yellowdog_client.model import (
        CloudProvider,
        ComputeRequirementStaticTemplate,
        InstanceTypePriceSearch,
        UsageType,
    )

    compute = client.compute_client
    template = compute.get_compute_requirement_template_by_name("raydog", "emulated")
    assert isinstance(template, ComputeRequirementStaticTemplate) and template.sources
    source = compute.get_compute_source_template(template.sources[0].sourceTemplateId)
    assert_server_fields_filled(source)
    assert source.source.provider == CloudProvider.AWS and source.source.instanceType
    summaries = compute.find_all_compute_source_templates()
    assert source.id in {s.id for s in summaries}
    search = InstanceTypePriceSearch(
        providers=[CloudProvider.AWS],
        region=source.source.region,
        instanceType=source.source.instanceType,
        usageTypes=[UsageType.ON_DEMAND],
    )
    prices = client.cloud_info_client.get_instance_type_prices(search).list_all()
    assert len(prices) == 1
    price = prices[0]
    assert price.usageType == UsageType.ON_DEMAND and price.price.value > 0 and price.price.currency
    assert price.instanceType == source.source.instanceType and price.provider == CloudProvider.AWS
    everything = client.cloud_info_client.get_instance_type_prices(InstanceTypePriceSearch()).list_all()
    assert len(everything) > 1


def test_allowances_round_trip_and_count_instance_hours(
    client: PlatformClient, yellowdog_emulator: Emulator
) -> None:
    """Create, read, list, boost and delete an allowance of each kind through the real SDK; its remaining
    hours go down as instances it covers run, and an exhausted one refuses the provisioning it covers."""
    from datetime import UTC, datetime

    from yellowdog_client.model import (
        AccountAllowance,
        AllowanceLimitEnforcement,
        AllowanceResetType,
        AllowanceSearch,
        InstanceStatus,
        RequirementsAllowance,
        SourceAllowance,
    )

    allowances = client.allowances_client
    common = {
        "effectiveFrom": datetime.now(UTC),
        "resetType": AllowanceResetType.NONE,
        "limitEnforcement": AllowanceLimitEnforcement.HARD,
        "monitoredStatuses": [InstanceStatus.RUNNING, InstanceStatus.PENDING],
    }
    account = allowances.add_allowance(AccountAllowance(description="conf account", allowedHours=5, **common))
    assert isinstance(account, AccountAllowance)
    assert_server_fields_filled(account)
    assert account.remainingHours == 5 and account.limitEnforcement == AllowanceLimitEnforcement.HARD
    cap = allowances.add_allowance(
        RequirementsAllowance(
            description="conf cap", namespace="capped", allowedHours=0, hardLimitGraceMinutes=0, **common
        )
    )
    assert isinstance(cap, RequirementsAllowance) and cap.namespace == "capped"
    with pytest.raises(InvalidRequestException, match="'sourceId' is required"):
        allowances.add_allowance(SourceAllowance(sourceId="", allowedHours=1, **common))
    found = allowances.get_allowances(AllowanceSearch(description="conf")).list_all()
    assert {a.id for a in found} == {account.id, cap.id}
    for allowance in found:
        assert_server_fields_filled(allowance)

    usage = ComputeRequirementTemplateUsage(
        templateId=TEMPLATE, requirementName="cap-pool", requirementNamespace="capped", targetInstanceCount=1
    )
    properties = ProvisionedWorkerPoolProperties(createNodeWorkers=NodeWorkerTarget.per_node(1), maxNodes=1)
    with pytest.raises(InvalidRequestException, match=r"conf cap.*exhausted"):
        client.worker_pool_client.provision_worker_pool(usage, properties)
    boosted = allowances.boost_allowance_by_id(cap.id, 1)
    assert boosted.boostHours == 1 and boosted.remainingHours == 1
    pool = client.worker_pool_client.provision_worker_pool(usage, properties)
    compute_id = client.worker_pool_client.get_worker_pool_by_id(pool.id).computeRequirementId
    requirement = client.compute_client.get_compute_requirement_by_id(compute_id)
    assert client.allowances_client.check_compute_requirement_exhaustion(requirement) == []
    remaining = allowances.get_allowance_by_id(cap.id).remainingHours  # PENDING counts too
    assert 0 < remaining < 1
    assert allowances.get_allowance_by_id(account.id).remainingHours < 5

    client.worker_pool_client.shutdown_worker_pool_by_id(pool.id)
    client.compute_client.terminate_compute_requirement_by_id(compute_id)
    for allowance in (account, cap):
        allowances.delete_allowance_by_id(allowance.id)
    assert allowances.get_allowances(AllowanceSearch(description="conf")).list_all() == []
    with pytest.raises(InvalidRequestException, match="not found"):
        allowances.get_allowance_by_id(cap.id)
    assert yellowdog_emulator.wait_until_clean() == []


def test_a_hard_allowance_ends_the_instances_it_covers(
    client: PlatformClient, yellowdog_emulator: Emulator
) -> None:
    """Exhausted with no grace left, a hard allowance terminates what it covers; the task running there
    fails as lost, and the platform says which allowance is exhausted."""
    from datetime import UTC, datetime

    from yellowdog_client.model import (
        AllowanceLimitEnforcement,
        AllowanceResetType,
        InstanceStatus,
        RequirementAllowance,
    )

    pools, work = client.worker_pool_client, client.work_client
    pool = _provision_pool(client, "hard", "hard-pool", 1)
    compute_id = pools.get_worker_pool_by_id(pool.id).computeRequirementId
    run = RunSpecification(taskTypes=["bash"], workerTags=["hard-pool"], namespaces=["hard"])
    requirement = work.add_work_requirement(
        WorkRequirement(
            namespace="hard", name="hard-wr", taskGroups=[TaskGroup(name="g", runSpecification=run)]
        )
    )
    task = work.add_tasks_to_task_group_by_id(
        requirement.taskGroups[0].id,
        [Task(name="hard-t", taskType="bash", arguments=["taskdata.txt"], taskData="sleep 60")],
    )[0]
    allowance = client.allowances_client.add_allowance(
        RequirementAllowance(
            requirementId=compute_id,
            description="hard cap",
            effectiveFrom=datetime.now(UTC),
            resetType=AllowanceResetType.NONE,
            limitEnforcement=AllowanceLimitEnforcement.HARD,
            monitoredStatuses=[InstanceStatus.RUNNING],
            allowedHours=0,
            hardLimitGraceMinutes=0,
        )
    )
    deadline = time.monotonic() + 20
    while work.get_task_by_id(task.id).status not in (TaskStatus.FAILED,):
        assert time.monotonic() < deadline, "the hard allowance did not end the instance"
        time.sleep(0.1)
    assert work.get_task_by_id(task.id).errors[0].errorType == "ALLOCATION_LOST"
    compute = client.compute_client.get_compute_requirement_by_id(compute_id)
    notices = client.allowances_client.check_compute_requirement_exhaustion(compute)
    assert [n.allowanceId for n in notices] == [allowance.id]
    assert notices[0].allowanceDescription == "hard cap"
    assert work.get_work_requirement_by_id(requirement.id).status == WorkRequirementStatus.FAILED
    pools.shutdown_worker_pool_by_id(pool.id)
    client.compute_client.terminate_compute_requirement_by_id(compute_id)
    client.allowances_client.delete_allowance_by_id(allowance.id)
    assert yellowdog_emulator.wait_until_clean() == []


def test_a_retry_policy_starts_a_lost_task_again_and_fails_a_failing_one(
    client: PlatformClient, yellowdog_emulator: Emulator
) -> None:
    """`retryPolicy` for ALLOCATION_LOST only: a task whose instance dies is READY again (retryCount 1,
    its error kept, not the cause of a failure) and runs on another instance; a task whose process exits
    non-zero fails at once."""
    from yellowdog_client.model import RetryPolicy, Selection, TaskErrorSelector, TaskStatus, WorkerPoolStatus

    lost_only = Selection(includes=[TaskErrorSelector(errorTypes=Selection(includes=["ALLOCATION_LOST"]))])
    pools, work = client.worker_pool_client, client.work_client
    pool = _provision_pool(client, "retry", "retry-pool", 2)
    run = RunSpecification(
        taskTypes=["bash"],
        workerTags=["retry-pool"],
        namespaces=["retry"],
        retryPolicy=RetryPolicy(maxRetries=2, retryErrors=lost_only),
    )
    requirement = work.add_work_requirement(
        WorkRequirement(
            namespace="retry", name="retry-wr", taskGroups=[TaskGroup(name="g", runSpecification=run)]
        )
    )
    sleeper, failing = work.add_tasks_to_task_group_by_id(
        requirement.taskGroups[0].id,
        [
            Task(name="retry-t", taskType="bash", arguments=["taskdata.txt"], taskData="sleep 60"),
            Task(name="retry-f", taskType="bash", arguments=["taskdata.txt"], taskData="exit 4"),
        ],
    )

    def status(task: Task) -> TaskStatus | None:
        return work.get_task_by_id(task.id).status

    deadline = time.monotonic() + 20
    while status(sleeper) != TaskStatus.EXECUTING or status(failing) != TaskStatus.FAILED:
        assert time.monotonic() < deadline, "the tasks did not start"
        time.sleep(0.1)
    first_node = work.get_task_by_id(sleeper.id).nodeId
    assert work.get_task_by_id(failing.id).retryCount == 0  # PROCESS_NON_ZERO_EXIT is not retried
    yellowdog_emulator.kill_instance_of_task("retry-t")
    again = work.get_task_by_id(sleeper.id)
    assert again.status in (TaskStatus.READY, TaskStatus.EXECUTING) and again.retryCount == 1
    assert again.errors[0].errorType == "ALLOCATION_LOST" and again.errors[0].causedFailure is False
    deadline = time.monotonic() + 20
    while status(sleeper) != TaskStatus.EXECUTING:  # the pool's other instance takes it
        assert time.monotonic() < deadline, "the lost task did not run again"
        time.sleep(0.1)
    assert work.get_task_by_id(sleeper.id).nodeId != first_node
    work.cancel_work_requirement_by_id(requirement.id, True)
    pools.shutdown_worker_pool_by_id(pool.id)
    assert pools.get_worker_pool_by_id(pool.id).status in (
        WorkerPoolStatus.SHUTDOWN,
        WorkerPoolStatus.TERMINATED,
    )
    assert yellowdog_emulator.wait_until_clean() == []


def test_the_agent_uploads_declared_outputs_when_a_task_ends(
    client: PlatformClient, yellowdog_emulator: Emulator, tmp_path: Path
) -> None:
    """`Task.data.outputs`: a finished task's files go to their destination; after a failure only the
    `alwaysUpload` ones; a lost machine uploads nothing; a source outside the task's folder is ignored."""
    work = client.work_client
    pool = _provision_pool(client, "outputs", "outputs-pool", 3)
    run = RunSpecification(taskTypes=["bash"], workerTags=["outputs-pool"], namespaces=["outputs"])
    requirement = work.add_work_requirement(
        WorkRequirement(
            namespace="outputs", name="outputs-wr", taskGroups=[TaskGroup(name="g", runSpecification=run)]
        )
    )
    store = tmp_path / "store"

    def outputs(task: str, *names: str, always: bool = False) -> TaskData:
        return TaskData(
            outputs=[TaskDataOutput(n, (store / task / Path(n).name).as_uri(), always) for n in names]
        )

    script = "echo out-$YD_TASK_ID > result.txt; echo printed"
    tasks = [
        Task(
            name="ok",
            taskType="bash",
            arguments=["taskdata.txt"],
            taskData=script,
            data=outputs("ok", "result.txt", "taskoutput.txt", "../taskdata.txt", "missing.txt"),
        ),
        Task(
            name="bad",
            taskType="bash",
            arguments=["taskdata.txt"],
            taskData=f"{script}; exit 2",
            data=TaskData(
                outputs=[
                    *outputs("bad", "result.txt").outputs,
                    *outputs("bad", "taskoutput.txt", always=True).outputs,
                ]
            ),
        ),
        Task(
            name="lost",
            taskType="bash",
            arguments=["taskdata.txt"],
            taskData=f"{script}; sleep 60",
            data=outputs("lost", "taskoutput.txt", always=True),
        ),
    ]
    ok, bad, lost = work.add_tasks_to_task_group_by_id(requirement.taskGroups[0].id, tasks)
    deadline = time.monotonic() + 20
    while {work.get_task_by_id(t.id).status for t in (ok, bad)} != {TaskStatus.COMPLETED, TaskStatus.FAILED}:
        assert time.monotonic() < deadline, "the tasks did not end"
        time.sleep(0.1)
    assert (store / "ok" / "result.txt").read_text().startswith("out-")
    assert (store / "ok" / "taskoutput.txt").read_text() == "printed\n"
    assert not (store / "ok" / "taskdata.txt").exists() and not (store / "ok" / "missing.txt").exists()
    assert (store / "bad" / "taskoutput.txt").read_text() == "printed\n"  # alwaysUpload: after a failure
    assert not (store / "bad" / "result.txt").exists()
    while work.get_task_by_id(lost.id).status != TaskStatus.EXECUTING:
        assert time.monotonic() < deadline, "the third task did not start"
        time.sleep(0.1)
    yellowdog_emulator.kill_instance_of_task("lost")
    assert not (store / "lost").exists()  # the machine is gone, and its agent with it
    if work.get_work_requirement_by_id(requirement.id).status not in (
        WorkRequirementStatus.FAILED,
        WorkRequirementStatus.COMPLETED,
    ):
        work.cancel_work_requirement_by_id(requirement.id, True)
    client.worker_pool_client.shutdown_worker_pool_by_id(pool.id)
    assert yellowdog_emulator.wait_until_clean() == []


def _provision_pool(client: PlatformClient, namespace: str, name: str, nodes: int) -> Any:
    """A pool of `nodes` nodes of the emulated template, one worker each, tagged with its name."""
    usage = ComputeRequirementTemplateUsage(
        templateId=TEMPLATE, requirementName=name, requirementNamespace=namespace, targetInstanceCount=nodes
    )
    properties = ProvisionedWorkerPoolProperties(
        createNodeWorkers=NodeWorkerTarget.per_node(1), maxNodes=nodes, workerTag=name
    )
    return client.worker_pool_client.provision_worker_pool(usage, properties)
