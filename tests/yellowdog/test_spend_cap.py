"""The spend cap (max_node_hours / max_cost): a hard platform allowance on the cluster's own instances,
created before its first pool and deleted at shut-down; at the cap the platform ends the nodes and the
cluster says why, and growth is refused with the cap named. Real SDK, emulator, nothing left alive."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

import pytest
from conftest import LISTEN_SCRIPT, SLEEP_SCRIPT, TEMPLATE
from yellowdog_client.model import (
    AllowanceLimitEnforcement,
    AllowanceSearch,
    ComputeRequirementSearch,
    RequirementsAllowance,
)

from raydog_core import RayDogCluster, spend_watch
from raydog_core.errors import InfrastructureError, NodeFailedError, SpecError, SpendCapError
from raydog_core.testing.emulator import Emulator

pytestmark = pytest.mark.usefixtures("quick_stand_in_head")  # no real Ray head here


@pytest.fixture
def client(yellowdog_emulator: Emulator) -> Any:
    client = yellowdog_emulator.platform_client()
    yield client
    client.close()


def _raydog_caps(client: Any) -> list[Any]:
    found = client.allowances_client.get_allowances(
        AllowanceSearch(description="raydog spend cap")
    ).list_all()
    return list(found)


def test_caps_are_checked_before_anything_exists(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator, raydog_home: Any
) -> None:
    with pytest.raises(SpecError, match=r"max_node_hours.*YellowDog allowance.*backend 'yellowdog'"):
        RayDogCluster(cluster_name="localcap", max_node_hours=2)
    yellowdog_emulator.platform.add_template("raydog/cap-unpriced", instance_type="z1.none")
    unpriced = RayDogCluster(
        cluster_name="capunpriced",
        max_cost=5,
        **{**yd_kwargs, "head_node_compute_requirement_template_id": "raydog/cap-unpriced"},
    )
    with pytest.raises(SpecError, match=r"max_cost.*no price.*give max_node_hours instead"):
        unpriced.build()
    with pytest.raises(SpecError, match=r"max_cost.*less than one node-hour"):
        RayDogCluster(cluster_name="capsmall", max_cost=0.05, **yd_kwargs).build()
    with pytest.raises(SpecError, match="max_node_hours"):
        RayDogCluster(cluster_name="capzero", max_node_hours=0, **yd_kwargs)
    assert yellowdog_emulator.live_resources() == []


def test_a_capped_cluster_runs_under_a_hard_allowance_that_shut_down_removes(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator, client: Any
) -> None:
    # 1.00 USD at the dearest price of the cluster (m5.large on demand, 0.111 per hour): 9 node-hours
    cluster = RayDogCluster(
        cluster_name="capped",
        head_node_ray_start_script=LISTEN_SCRIPT,
        max_cost=1.0,
        max_node_hours=50,
        **yd_kwargs,
    )
    cluster.add_worker_pool(
        worker_pool_node_count=2,
        worker_node_task_script=SLEEP_SCRIPT,
        worker_node_compute_requirement_template_id=TEMPLATE,
    )
    try:
        cluster.build(wait_for_workers=False)
        [cap] = _raydog_caps(client)
        assert isinstance(cap, RequirementsAllowance) and cap.allowedHours == 9
        assert cap.limitEnforcement == AllowanceLimitEnforcement.HARD and cap.hardLimitGraceMinutes == 0
        assert cap.namespace == "raydog-test" and cap.tag
        computes = client.compute_client.get_compute_requirements(
            ComputeRequirementSearch(namespace="raydog-test")
        ).list_all()
        ours = [c for c in computes if c.name.startswith("capped-") and c.status.name != "TERMINATED"]
        assert len(ours) == 2 and {c.tag for c in ours} == {cap.tag}  # head and workers both count
        assert 0 < cap.remainingHours <= 9
    finally:
        usage = cluster.shut_down()
    assert usage is not None and usage.node_hours > 0
    assert _raydog_caps(client) == []
    assert yellowdog_emulator.wait_until_clean() == []


def test_at_the_cap_nodes_end_with_the_cap_named_and_growth_is_refused(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator, client: Any
) -> None:
    cluster = RayDogCluster(
        cluster_name="overcap", head_node_ray_start_script=LISTEN_SCRIPT, max_node_hours=1, **yd_kwargs
    )
    pool = {"worker_node_task_script": SLEEP_SCRIPT, "worker_node_compute_requirement_template_id": TEMPLATE}
    cluster.add_worker_pool(worker_pool_node_count=1, **pool)
    try:
        cluster.build(wait_for_workers=False)
        yellowdog_emulator.pass_time(hours=0.6)  # 2 nodes x 0.6 h > the cap of 1 node-hour
        deadline = time.monotonic() + 30
        error = None
        while error is None:
            assert time.monotonic() < deadline, "the platform did not end the capped cluster's nodes"
            try:
                cluster.wait_for_nodes(timeout=0.5)
            except NodeFailedError as failed:
                error = failed
            except TimeoutError:
                continue
        assert "spend cap of 1 node-hours" in str(error) and "ALLOCATION_LOST" in str(error)
        assert isinstance(error, SpendCapError) and not isinstance(error, InfrastructureError)
        with pytest.raises(SpendCapError, match=r"overcap has used up its spend cap of 1 node-hours"):
            cluster.add_worker_pool(worker_pool_node_count=1, **pool)
    finally:
        usage = cluster.shut_down()
    assert usage is not None and usage.node_hours >= 1
    assert _raydog_caps(client) == []
    assert yellowdog_emulator.wait_until_clean() == []


def test_the_run_log_warns_at_80_percent_and_says_when_the_cap_is_used_up(
    yd_kwargs: dict[str, Any],
    yellowdog_emulator: Emulator,
    client: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(spend_watch, "INTERVAL_S", 0.1)
    run_log = logging.getLogger("test.flow-run")
    caplog.set_level(logging.INFO, logger="test.flow-run")
    cluster = RayDogCluster(
        cluster_name="watched", head_node_ray_start_script=LISTEN_SCRIPT, max_node_hours=10, **yd_kwargs
    )
    cluster.add_worker_pool(
        worker_pool_node_count=1,
        worker_node_task_script=SLEEP_SCRIPT,
        worker_node_compute_requirement_template_id=TEMPLATE,
    )

    def logged(level: int, text: str) -> bool:
        deadline = time.monotonic() + 30
        while not any(r.levelno == level and re.search(text, r.getMessage()) for r in caplog.records):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    try:
        cluster.build(wait_for_workers=False)
        assert cluster.watch_spend(run_log) is not None  # as the Prefect runner does with its run logger
        yellowdog_emulator.pass_time(hours=4.2)  # 2 nodes: 8.4 of the 10 node-hours
        assert logged(logging.WARNING, r"watched has used 8\d% of its spend cap \(8\.\d of 10 node-hours\)")
        assert not any(r.levelno == logging.ERROR for r in caplog.records)
        yellowdog_emulator.pass_time(hours=1)  # 10.4 of 10
        assert logged(logging.ERROR, r"watched has used up its spend cap")
    finally:
        cluster.shut_down()
    assert _raydog_caps(client) == []
    assert yellowdog_emulator.wait_until_clean() == []


def test_no_cap_no_watch(yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator) -> None:
    cluster = RayDogCluster(cluster_name="unwatched", head_node_ray_start_script=LISTEN_SCRIPT, **yd_kwargs)
    try:
        cluster.build(wait_for_workers=False)  # its head runs no Ray: not waited for in Ray
        assert cluster.watch_spend() is None
        assert cluster._ensure_backend().spend(cluster._cluster_id()) is None
    finally:
        cluster.shut_down()
    assert yellowdog_emulator.wait_until_clean() == []
