"""What a cluster used, measured at shut-down from the platform's instance records and price list, through
the real SDK against the emulator; everything is gone afterwards."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from conftest import LISTEN_SCRIPT, SLEEP_SCRIPT, TEMPLATE, stand_in_cluster

from raydog_core import RayDogCluster
from raydog_core.proxy import RayDogClusterProxy
from raydog_core.state import ClusterState
from raydog_core.testing.emulator import Emulator
from raydog_core.testing.emulator.billing import DEFAULT_PRICES

pytestmark = pytest.mark.usefixtures("quick_stand_in_head")  # no real Ray head here

SPOT_TEMPLATE = "raydog/usage-spot"


@pytest.fixture(scope="module", autouse=True)
def spot_template(yellowdog_emulator: Emulator) -> None:
    yellowdog_emulator.platform.add_template(SPOT_TEMPLATE, instance_type="m5.xlarge", spot=True)


def _expected(emulator: Emulator, cluster_name: str) -> tuple[float, float]:
    """(node-hours, cost) of the cluster's instances by the emulator's own books."""
    prices = {(p.instance_type, p.usage_type == "SPOT"): p.value for p in DEFAULT_PRICES}
    hours = cost = 0.0
    with emulator.platform.lock:
        for compute in emulator.platform.computes.values():
            if compute.namespace != "raydog-test" or not compute.name.startswith(cluster_name + "-"):
                continue
            for instance in compute.instances:
                assert instance.status == "TERMINATED"
                used = (instance.changed - instance.created).total_seconds() / 3600
                hours += used
                cost += used * prices[(compute.source.instance_type, compute.source.spot)]
    return hours, cost


def _cluster(yd_kwargs: dict[str, Any], name: str, states: list[ClusterState] | None = None) -> RayDogCluster:
    cluster = RayDogCluster(
        cluster_name=name,
        head_node_ray_start_script=LISTEN_SCRIPT,
        on_state=states.append if states is not None else None,
        **yd_kwargs,
    )
    cluster.add_worker_pool(
        worker_pool_node_count=2,
        worker_node_task_script=SLEEP_SCRIPT,
        worker_node_compute_requirement_template_id=SPOT_TEMPLATE,
    )
    cluster.add_worker_pool(
        worker_pool_node_count=1,
        worker_node_task_script=SLEEP_SCRIPT,
        worker_node_compute_requirement_template_id=TEMPLATE,
    )
    return cluster


def test_shut_down_returns_node_hours_and_cost(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    states: list[ClusterState] = []
    cluster = _cluster(yd_kwargs, "billed", states)
    try:
        cluster.build(wait_for_workers=False)
    finally:
        usage = cluster.shut_down()
    assert usage is not None and usage.currency == "USD"
    hours, cost = _expected(yellowdog_emulator, "billed")
    assert hours > 0 and cost > 0
    # the SDK's timestamps are in milliseconds: a few of them per instance is all that may differ
    assert usage.node_hours == pytest.approx(hours, abs=1e-5)
    assert usage.cost == pytest.approx(cost, abs=1e-5)
    saved = states[-1]
    assert saved.phase == "shut_down" and saved.usage is not None
    assert saved.usage.node_hours == usage.node_hours and saved.usage.cost == usage.cost
    assert saved.usage.measured_at.tzinfo == UTC
    assert cluster.shut_down() == usage  # idempotent, and still says what was used
    assert yellowdog_emulator.wait_until_clean() == []


def test_shut_down_from_saved_state_measures_too(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    cluster = _cluster(yd_kwargs, "billedelsewhere")
    try:
        cluster.build(wait_for_workers=False)
        saved = cluster.save_state_to_json()
        proxy = RayDogClusterProxy(**yellowdog_emulator.cluster_kwargs())
        proxy.load_saved_state_from_json(saved)
        usage = proxy.shut_down()
    finally:
        cluster.shut_down()
    assert usage is not None
    hours, cost = _expected(yellowdog_emulator, "billedelsewhere")
    assert usage.node_hours == pytest.approx(hours, abs=1e-5) and usage.cost == pytest.approx(cost, abs=1e-5)
    assert proxy.state is not None and proxy.state.usage is not None
    assert ClusterState.from_json(proxy.state.to_json()).usage == proxy.state.usage  # it round-trips
    assert yellowdog_emulator.wait_until_clean() == []


def test_usage_counts_api_calls_per_pool_not_per_node(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    """Measuring reads each pool's instances in one search, whatever the pool's size."""
    counts = []
    for nodes in (1, 6):
        cluster = stand_in_cluster(yd_kwargs, f"calls{nodes}", nodes)
        try:
            cluster.build(wait_for_workers=False)
            backend = cluster._ensure_backend()
            before = yellowdog_emulator.calls
            usage = backend.usage(cluster._cluster_id(), [p.pool_id for p in cluster.state.pools])
            counts.append(yellowdog_emulator.calls - before)
            assert usage.node_hours > 0
        finally:
            cluster.shut_down()
    assert counts[0] == counts[1]
    assert yellowdog_emulator.wait_until_clean() == []
