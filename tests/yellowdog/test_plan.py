"""`RayDogCluster.plan()` and `raydog plan` on the emulator with the real SDK: checks before anything exists,
prices from the platform's price list, allowance headroom; nothing is ever created."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import TEMPLATE
from yellowdog_client.model import (
    AllowanceLimitEnforcement,
    AllowanceResetType,
    InstanceStatus,
    RequirementsAllowance,
)
from yellowdog_client.model.exceptions import InvalidRequestException

from raydog_core import RayDogCluster
from raydog_core.errors import SpecError
from raydog_core.testing.emulator import Emulator
from raydog_core.testing.emulator.billing import InstancePrice

SPOT_TEMPLATE = "raydog/plan-spot-xl"
SPOT_FIRST_TEMPLATE = "raydog/plan-spot-first"


@pytest.fixture(scope="module", autouse=True)
def spot_template(yellowdog_emulator: Emulator) -> None:
    yellowdog_emulator.platform.add_template(SPOT_TEMPLATE, instance_type="m5.xlarge", spot=True)
    yellowdog_emulator.platform.add_template(SPOT_FIRST_TEMPLATE, spot=True, then_on_demand=True)


@pytest.fixture
def allowances(yellowdog_emulator: Emulator) -> Any:
    """The platform's allowance client; every allowance a test adds is deleted after it, then nothing
    may be left alive."""
    client = yellowdog_emulator.platform_client()
    before = {a.id for a in _all_allowances(client)}
    yield client.allowances_client
    for allowance in _all_allowances(client):
        if allowance.id not in before:
            client.allowances_client.delete_allowance_by_id(allowance.id)
    client.close()
    assert yellowdog_emulator.wait_until_clean() == []  # allowances count as live resources too


def _all_allowances(client: Any) -> list[Any]:
    from yellowdog_client.model import AllowanceSearch

    return client.allowances_client.get_allowances(AllowanceSearch()).list_all()


def _cluster(yd_kwargs: dict[str, Any], name: str = "planned", **fields: Any) -> RayDogCluster:
    cluster = RayDogCluster(
        cluster_name=name,
        cluster_lifetime=timedelta(hours=2),
        worker_pools=[
            {"worker_pool_node_count": 3, "worker_node_compute_requirement_template_id": TEMPLATE},
            {"worker_pool_node_count": 2, "worker_node_compute_requirement_template_id": SPOT_TEMPLATE},
        ],
        **{**yd_kwargs, **fields},
    )
    return cluster


def test_plan_prices_every_pool_from_the_platform_and_creates_nothing(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    calls_before = yellowdog_emulator.call_counts
    plan = _cluster(yd_kwargs).plan()
    assert plan.ok and plan.backend == "yellowdog" and plan.currency == "USD"
    assert [(p.pool, p.role, p.count) for p in plan.pools] == [
        ("head", "head", 1),
        ("worker_pools.0", "worker", 3),
        ("worker_pools.1", "worker", 2),
    ]
    # the emulator's list prices: m5.large on demand 0.111, m5.xlarge spot 0.081 per hour
    assert [p.price_per_node_hour for p in plan.pools] == [0.111, 0.111, 0.081]
    assert plan.pools[2].capacity == "spot" and "m5.xlarge" in plan.pools[2].machine
    assert [p.capacity for p in plan.pools[:2]] == ["on-demand", "on-demand"]
    assert plan.cost_per_hour == pytest.approx(4 * 0.111 + 2 * 0.081)
    assert plan.lifetime == timedelta(hours=2)
    assert plan.worst_case_cost == pytest.approx(2 * (4 * 0.111 + 2 * 0.081))
    table = plan.table()
    assert "worker_pools.1" in table and "0.0810 USD" in table and "worst case" in table
    assert yellowdog_emulator.live_resources() == []
    calls = {k: v - calls_before.get(k, 0) for k, v in yellowdog_emulator.call_counts.items()}
    assert not any(
        name.startswith(("POST /work", "POST /workerPools", "PUT")) for name, n in calls.items() if n
    )


def test_a_head_on_spot_instances_is_refused_unless_the_spec_allows_it(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    """A reclaimed head ends the whole cluster, so by default the head never runs on spot: a template
    that gives spot instances (spot-first included) is refused before anything exists, naming the field."""
    for template in (SPOT_TEMPLATE, SPOT_FIRST_TEMPLATE):
        spot_head = _cluster(yd_kwargs, head_node_compute_requirement_template_id=template)
        with pytest.raises(
            SpecError, match=r"head_node_compute_requirement_template_id.*gives spot"
        ) as refused:
            spot_head.build()
        assert "head_node_allow_spot=True" in str(refused.value)
        with pytest.raises(SpecError, match="head_node_allow_spot"):
            spot_head.plan()
    assert yellowdog_emulator.live_resources() == []
    allowed = _cluster(
        yd_kwargs, head_node_compute_requirement_template_id=SPOT_TEMPLATE, head_node_allow_spot=True
    ).plan()
    assert allowed.ok and allowed.pools[0].capacity == "spot"
    assert any("head node may run on spot instances" in w for w in allowed.warnings), allowed.warnings
    assert not any("spot instances" in w for w in _cluster(yd_kwargs).plan().warnings)  # spot workers: fine


def test_a_spot_first_pool_is_planned_as_spot_first(yd_kwargs: dict[str, Any]) -> None:
    """Spot-first on YellowDog is the template's strategy: a waterfall whose first source is spot and a
    later one on demand. The plan says so, and prices the pool at its dearest source (on demand)."""
    cluster = RayDogCluster(
        cluster_name="spotfirst",
        worker_pools=[
            {"worker_pool_node_count": 2, "worker_node_compute_requirement_template_id": SPOT_FIRST_TEMPLATE}
        ],
        **yd_kwargs,
    )
    plan = cluster.plan()
    workers = plan.pools[1]
    assert workers.capacity == "spot-first" and workers.may_run_on_spot
    assert workers.machine.startswith(
        "spot-first: m5.large, AWS eu-west-2, spot | m5.large, AWS eu-west-2, on-demand"
    )
    assert workers.price_per_node_hour == 0.111  # its dearest source: on demand
    assert "spot-first" in plan.table() and not plan.warnings


def test_no_lifetime_is_priced_at_the_backends_default(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    plan = RayDogCluster(cluster_name="nolife", **yd_kwargs).plan()
    assert plan.lifetime == timedelta(hours=24)  # what the YellowDog backend gives nodes then
    assert plan.worst_case_cost == pytest.approx(24 * 0.111)


def test_a_template_without_a_price_leaves_the_cost_unknown(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    yellowdog_emulator.platform.add_template("raydog/plan-unpriced", instance_type="x9.huge")
    plan = RayDogCluster(
        cluster_name="unpriced",
        **{**yd_kwargs, "head_node_compute_requirement_template_id": "raydog/plan-unpriced"},
    ).plan()
    assert plan.ok and plan.cost_per_hour is None and plan.worst_case_cost is None
    assert any("no price for raydog/plan-unpriced" in w for w in plan.warnings)
    assert "unknown" in plan.table()
    yellowdog_emulator.platform.set_price(InstancePrice("AWS", "eu-west-2", "x9.huge", "ON_DEMAND", 5.0))
    assert RayDogCluster(
        cluster_name="unpriced",
        **{**yd_kwargs, "head_node_compute_requirement_template_id": "raydog/plan-unpriced"},
    ).plan().cost_per_hour == pytest.approx(5.0)


def test_a_missing_worker_template_is_named_by_its_field(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    cluster = RayDogCluster(
        cluster_name="badpool",
        worker_pools=[
            {"worker_pool_node_count": 1, "worker_node_compute_requirement_template_id": "raydog/nope"}
        ],
        **yd_kwargs,
    )
    with pytest.raises(
        SpecError, match=r"worker_pools\.0\.worker_node_compute_requirement_template_id.*not found"
    ):
        cluster.plan()
    with pytest.raises(SpecError, match=r"worker_pools\.0\.worker_node_compute_requirement_template_id"):
        cluster.build()  # refused before the head exists
    assert yellowdog_emulator.live_resources() == []


def test_a_rejected_key_is_reported_without_its_secret(
    yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator
) -> None:
    cluster = _cluster({**yd_kwargs, "yd_application_key_secret": "not-the-secret"})
    with pytest.raises(SpecError, match="rejected the application key") as raised:
        cluster.plan()
    assert "not-the-secret" not in str(raised.value)
    assert yellowdog_emulator.live_resources() == []


def test_allowance_headroom(yd_kwargs: dict[str, Any], yellowdog_emulator: Emulator, allowances: Any) -> None:
    """An allowance that runs out before the lifetime is a warning; an exhausted one is a problem (the
    platform would refuse the pools), and the build is refused by the platform with nothing left."""
    common = {
        "effectiveFrom": datetime.now(UTC) - timedelta(minutes=1),
        "resetType": AllowanceResetType.NONE,
        "monitoredStatuses": [InstanceStatus.RUNNING],
    }
    short = allowances.add_allowance(
        RequirementsAllowance(
            description="team budget",
            namespace="raydog-test",
            allowedHours=3,
            limitEnforcement=AllowanceLimitEnforcement.HARD,
            **common,
        )
    )
    allowances.add_allowance(
        RequirementsAllowance(
            description="other namespace",
            namespace="elsewhere",
            allowedHours=0,
            limitEnforcement=AllowanceLimitEnforcement.HARD,
            **common,
        )
    )
    plan = _cluster(yd_kwargs, "budgeted").plan()
    assert [a.description for a in plan.allowances] == ["team budget"]
    headroom = plan.allowances[0]
    assert (
        headroom.covered_nodes == 6
        and headroom.hard
        and headroom.remaining_hours == pytest.approx(3, abs=0.01)
    )
    assert plan.ok and any("team budget" in w and "0.5 h" in w for w in plan.warnings)

    allowances.delete_allowance_by_id(short.id)
    allowances.add_allowance(
        RequirementsAllowance(
            description="spent",
            namespace="raydog-test",
            allowedHours=0,
            limitEnforcement=AllowanceLimitEnforcement.SOFT,
            **common,
        )
    )
    cluster = _cluster(yd_kwargs, "budgeted")
    plan = cluster.plan()
    assert not plan.ok and "'spent' is exhausted" in plan.problems[0]
    assert "problem:" in plan.table()
    with pytest.raises(InvalidRequestException, match="allowance 'spent' is exhausted"):
        cluster.build()  # the platform refuses the head's pool: the build cleans up and says why
    assert [r for r in yellowdog_emulator.wait_until_clean() if not r.startswith("allowance")] == []


def test_raydog_plan_command(tmp_path: Path, yellowdog_emulator: Emulator, raydog_home: Any) -> None:
    spec = tmp_path / "cluster.yaml"
    spec.write_text(
        "cluster_name: cliplan\n"
        "backend: yellowdog\n"
        "cluster_namespace: raydog-test\n"
        "cluster_lifetime: 3600\n"
        f"head_node_compute_requirement_template_id: {TEMPLATE}\n"
        "worker_pools:\n"
        "  - worker_pool_node_count: 4\n"
        f"    worker_node_compute_requirement_template_id: {SPOT_TEMPLATE}\n"
    )
    env = {**os.environ, **yellowdog_emulator.environment(), "RAYDOG_HOME": str(raydog_home)}
    result = subprocess.run(
        [sys.executable, "-m", "raydog_core.cli", "plan", str(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "plan for cluster cliplan (yellowdog)" in result.stdout
    assert "estimated cost per hour: 0.4350 USD" in result.stdout  # 0.111 + 4 x 0.081
    assert yellowdog_emulator.key_secret not in result.stdout + result.stderr
    assert yellowdog_emulator.live_resources() == []
