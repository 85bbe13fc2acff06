"""Faults and bad input: the cluster completes or fails with a clear error, and nothing is left alive."""

from __future__ import annotations

import tarfile
import time
from datetime import timedelta
from typing import Any

import pytest
from conftest import FAILING_SCRIPT, LISTEN_SCRIPT, SLEEP_SCRIPT, TEMPLATE, stand_in_cluster

from raydog_core import RayDogCluster
from raydog_core.backends.base import ClusterOptions, NodeLaunch, NodeRole, NodeStatus
from raydog_core.backends.yellowdog.backend import YellowDogBackend
from raydog_core.errors import (
    BuildTimeoutError,
    InfrastructureError,
    NoCapacityError,
    NodeFailedError,
    NodeLostError,
    RayDogError,
    SpecError,
)
from raydog_core.testing.emulator import Emulator

pytestmark = pytest.mark.usefixtures("quick_stand_in_head")  # no real Ray head here


def wait_for(predicate: Any, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def wait_for_failure(cluster: RayDogCluster, timeout: float = 30.0) -> None:
    """Let wait_for_nodes report a failed node (only the platform's view: these nodes run no Ray)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            cluster.wait_for_nodes(timeout=0.2)
        except BuildTimeoutError:
            continue


@pytest.fixture(autouse=True)
def no_faults_after(yellowdog_emulator: Emulator) -> Any:
    yield
    faults = yellowdog_emulator.faults
    faults.error_rate, faults.boot_delay_s, faults.fail_tasks, faults.no_capacity = 0.0, 0.0, None, None
    assert yellowdog_emulator.wait_until_clean() == []


def test_invalid_credentials_fail_clearly_and_create_nothing(
    yd_kwargs: dict, yellowdog_emulator: Emulator
) -> None:
    cluster = RayDogCluster(
        cluster_name="badkey", **{**yd_kwargs, "yd_application_key_secret": "wrong-secret"}
    )
    with pytest.raises(SpecError, match=r"yd_application_key_id.*rejected the application key") as raised:
        cluster.build()
    assert "wrong-secret" not in str(raised.value)
    assert yellowdog_emulator.live_resources() == []


def test_unknown_template_fails_clearly(yd_kwargs: dict, yellowdog_emulator: Emulator) -> None:
    kwargs = {**yd_kwargs, "head_node_compute_requirement_template_id": "raydog/no-such-template"}
    with pytest.raises(SpecError, match=r"head_node_compute_requirement_template_id.*not found"):
        RayDogCluster(cluster_name="notemplate", **kwargs).build()
    assert yellowdog_emulator.wait_until_clean() == []


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"cluster_name": "Bad Name!"}, "cluster_name"),
        ({"cluster_name": "a" * 57}, "cluster_name"),  # too long once '-w999' is added
        ({"cluster_name": "ok", "cluster_namespace": "-ns"}, "cluster_namespace"),
        ({"cluster_name": "ok", "head_node_compute_requirement_template_id": None}, "head_node_compute"),
    ],
)
def test_bad_names_fail_before_any_request(
    yd_kwargs: dict, yellowdog_emulator: Emulator, fields: dict, field: str
) -> None:
    calls = yellowdog_emulator.calls
    with pytest.raises(SpecError, match=field):
        RayDogCluster(**{**yd_kwargs, **fields})
    assert yellowdog_emulator.calls == calls


@pytest.mark.fault_case("builder", "yellowdog", "head_script_fails")
def test_failing_head_script_fails_the_build_with_its_exit_code(
    yd_kwargs: dict, yellowdog_emulator: Emulator, fault_leaks
) -> None:
    """The node's own output reaches the error and the post-mortem although the instance is gone: the
    platform's agent uploaded it (`Task.data.outputs`) to the task output store, and RayDog read it back."""
    cluster = RayDogCluster(cluster_name="failhead", head_node_ray_start_script=FAILING_SCRIPT, **yd_kwargs)
    with pytest.raises(NodeFailedError, match="exit code 3") as failed:
        cluster.build()
    assert "head: cannot start" in str(failed.value)  # the last lines of its output, in the error
    bundle = cluster.post_mortem
    assert bundle is not None
    with tarfile.open(bundle.path) as archive:
        outputs = [
            archive.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in archive
            if m.isfile() and m.name.startswith("logs/") and m.name.endswith(".log")
        ]
    assert outputs and all("head: cannot start" in text for text in outputs), outputs
    fault_leaks.assert_none(emulator=yellowdog_emulator)
    assert yellowdog_emulator.wait_until_clean() == []


def test_a_pool_the_platform_cannot_fill_fails_the_build_at_once_with_the_providers_reason(
    yd_kwargs: dict, yellowdog_emulator: Emulator, fault_leaks, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No capacity (every compute source of the pool errored) is not a slow boot: the build fails within
    seconds, naming the pool and the provider's message, and cleans up."""
    from raydog_core.backends.yellowdog import starved_pools

    monkeypatch.setattr(starved_pools, "STARVED_AFTER_S", 1.0)  # a waiting node's pool is checked after 1 s
    yellowdog_emulator.faults.no_capacity = r"^nocap-w"
    cluster = stand_in_cluster(yd_kwargs, "nocap", workers=2)
    started = time.monotonic()
    with pytest.raises(NoCapacityError, match="InsufficientInstanceCapacity") as refused:
        cluster.build(timedelta(minutes=10))
    assert "no capacity for pool nocap-w" in str(refused.value) and isinstance(
        refused.value, InfrastructureError
    )
    assert time.monotonic() - started < 60  # not the ten-minute timeout
    fault_leaks.assert_none(emulator=yellowdog_emulator)


@pytest.mark.fault_case("builder", "yellowdog", "build_timeout")
def test_slow_boot_times_out_and_cleans_up(
    yd_kwargs: dict, yellowdog_emulator: Emulator, fault_leaks
) -> None:
    yellowdog_emulator.faults.boot_delay_s = 60
    cluster = RayDogCluster(cluster_name="slowboot", head_node_ray_start_script=SLEEP_SCRIPT, **yd_kwargs)
    started = time.monotonic()
    with pytest.raises(BuildTimeoutError, match="not up in time") as timed_out:
        cluster.build(head_node_build_timeout=timedelta(seconds=2))
    assert isinstance(timed_out.value, InfrastructureError)  # a retry may well succeed
    assert time.monotonic() - started < 30
    fault_leaks.assert_none(emulator=yellowdog_emulator)
    assert yellowdog_emulator.wait_until_clean() == []


@pytest.mark.fault_case("builder", "yellowdog", "transient_api_errors")
@pytest.mark.fault_case("builder", "yellowdog", "node_dies_mid_run")
def test_transient_errors_killed_node_and_failing_task(
    yd_kwargs: dict, yellowdog_emulator: Emulator, fault_leaks
) -> None:
    """20% of requests fail transiently; the build still completes, a node whose machine is lost runs
    again, and a task that fails every time fails the wait."""
    faults = yellowdog_emulator.faults
    faults.error_rate = 0.2
    faults.fail_tasks = r"^w2-"
    cluster = RayDogCluster(cluster_name="flaky", head_node_ray_start_script=LISTEN_SCRIPT, **yd_kwargs)
    pool = {"worker_node_task_script": SLEEP_SCRIPT, "worker_node_compute_requirement_template_id": TEMPLATE}
    cluster.add_worker_pool(worker_pool_node_count=2, **pool)
    try:
        cluster.build(wait_for_workers=False)
        assert wait_for(lambda: all(n.status == NodeStatus.RUNNING for n in cluster.nodes()))
        victim = next(n for n in cluster.nodes() if n.role == NodeRole.WORKER)
        yellowdog_emulator.kill_instance_of_task(victim.node_id)  # a spot instance reclaimed, a crash
        # The platform starts the node's task again (RayDog's retry policy for ALLOCATION_LOST), on a node
        # the pool gets back (RayDog resizes a pool short of nodes): the same node, running again.
        assert wait_for(lambda: all(n.status == NodeStatus.RUNNING for n in cluster.nodes()), timeout=60), (
            cluster.nodes()
        )
        dead = next(n for n in cluster.nodes() if n.node_id == victim.node_id)
        assert "started again (1x) after its machine was lost: ALLOCATION_LOST" in dead.detail
        cluster.remove_worker_pool(dead.pool_id)
        cluster.add_worker_pool(worker_pool_node_count=1, **pool)  # "w2-...": its task fails at once
        with pytest.raises(NodeFailedError, match="exit code 1") as failed:
            wait_for_failure(cluster)
        assert not isinstance(failed.value, InfrastructureError)  # its script: a retry would fail again
    finally:
        cluster.shut_down()
    assert faults.injected_errors > 0
    faults.error_rate = 0.0
    fault_leaks.assert_none(emulator=yellowdog_emulator)
    assert yellowdog_emulator.wait_until_clean() == []


def test_a_head_whose_machine_is_lost_is_an_infrastructure_error(
    yd_kwargs: dict, yellowdog_emulator: Emulator, fault_leaks
) -> None:
    """The head's machine goes away (nothing restarts a head: Ray has no second one): the wait fails
    with NodeLostError, an InfrastructureError, which orchestrators retry, unlike a script's failure."""
    cluster = RayDogCluster(cluster_name="losthead", head_node_ray_start_script=LISTEN_SCRIPT, **yd_kwargs)
    try:
        cluster.build(wait_for_workers=False)
        head = next(n for n in cluster.nodes() if n.role == NodeRole.HEAD)
        yellowdog_emulator.kill_instance_of_task(head.node_id)
        with pytest.raises(NodeLostError, match=r"head node .*ALLOCATION_LOST") as lost:
            wait_for_failure(cluster)
        assert isinstance(lost.value, InfrastructureError) and isinstance(lost.value, NodeFailedError)
    finally:
        cluster.shut_down()
    fault_leaks.assert_none(emulator=yellowdog_emulator)
    assert yellowdog_emulator.wait_until_clean() == []


def test_a_running_cluster_of_the_same_name_is_never_replaced_whoever_built_it(
    yellowdog_emulator: Emulator, raydog_home: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Same name, same (or no) labels, another client: refused, and the first cluster keeps running.
    Once it has been shut down, the name is free again."""
    backend = YellowDogBackend(yellowdog_emulator.credentials())
    options = ClusterOptions(name="rerun", namespace="raydog-test", lifetime=timedelta(minutes=5))
    launch = NodeLaunch(
        role=NodeRole.HEAD,
        pool_name="rerun-head",
        script=SLEEP_SCRIPT,
        env={},
    )
    launch = NodeLaunch(
        **{
            **launch.__dict__,
            "yellowdog": launch.yellowdog.model_copy(update={"compute_requirement_template_id": TEMPLATE}),
        }
    )
    first = backend.open_cluster(options)
    backend.create_pool(first.cluster_id, launch, 1)  # then another client builds the same spec
    with pytest.raises(RayDogError, match="that this client did not create"):
        backend.open_cluster(options)
    assert all(n.status == NodeStatus.RUNNING for n in backend.list_nodes(first.cluster_id))
    assert backend.shut_down(first.cluster_id) == []
    second = backend.open_cluster(options)  # the name is free once the first has finished
    assert second.cluster_id != first.cluster_id
    assert backend.shut_down(second.cluster_id) == []
    assert "emulator-secret" not in caplog.text and "emulator-secret" not in repr(backend)
    backend.close()
    assert yellowdog_emulator.wait_until_clean() == []


def test_a_running_cluster_of_another_run_is_never_replaced(
    yellowdog_emulator: Emulator, raydog_home: Any
) -> None:
    """Two flow runs (or DAG runs) with one cluster_name at once: the second must not tear down the first."""
    backend = YellowDogBackend(yellowdog_emulator.credentials())
    launch = NodeLaunch(role=NodeRole.HEAD, pool_name="shared-head", script=SLEEP_SCRIPT, env={})
    launch = NodeLaunch(
        **{
            **launch.__dict__,
            "yellowdog": launch.yellowdog.model_copy(update={"compute_requirement_template_id": TEMPLATE}),
        }
    )
    first = backend.open_cluster(
        ClusterOptions(name="shared", namespace="raydog-test", labels={"prefect-flow-run-id": "run-1"})
    )
    try:
        backend.create_pool(first.cluster_id, launch, 1)
        other_run = ClusterOptions(
            name="shared", namespace="raydog-test", labels={"prefect-flow-run-id": "run-2"}
        )
        with pytest.raises(
            RayDogError, match=r"in use .* by a running cluster .* that this client did not create"
        ):
            backend.open_cluster(other_run)
        assert [r.cluster_id for r in backend.list_clusters() if r.name == "shared"] == [first.cluster_id]
        assert all(n.status != NodeStatus.FAILED for n in backend.list_nodes(first.cluster_id))
    finally:
        assert backend.shut_down(first.cluster_id) == []
        backend.close()
    assert yellowdog_emulator.wait_until_clean() == []
