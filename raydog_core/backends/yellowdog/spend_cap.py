"""A cluster's spend cap as a platform allowance, so the platform enforces it even when no client runs.

The cap is a *requirements allowance* with hard enforcement and no grace: it counts the instance-hours
of compute requirements in the cluster's namespace carrying the cluster's own cap tag (every pool of a
capped cluster is provisioned with it). Used up, the platform refuses new provisioning it covers and
terminates the instances it covers. The tag, the allowance's id and the cap live in the cluster's
labels (RayDog's bookkeeping labels), so any process that reaches the cluster finds them; shut-down
deletes the allowance.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial

from yellowdog_client.model import (
    Allowance,
    AllowanceLimitEnforcement,
    AllowanceResetType,
    AllowanceSearch,
    InstanceStatus,
    RequirementsAllowance,
    Task,
)
from yellowdog_client.model.exceptions import InvalidRequestException
from yellowdog_client.platform_client import PlatformClient

from raydog_core.backends.yellowdog.node_status import machine_lost
from raydog_core.backends.yellowdog.quotes import Call
from raydog_core.errors import SpendCapError

TAG_LABEL = "raydog-cap-tag"
ALLOWANCE_LABEL = "raydog-cap-allowance"
HOURS_LABEL = "raydog-cap-hours"
DESCRIPTION_PREFIX = "raydog spend cap "
# Every status in which a cloud bills an instance (or may): counted against the cap.
BILLED = [InstanceStatus.PENDING, InstanceStatus.RUNNING, InstanceStatus.STOPPING, InstanceStatus.TERMINATING]


@dataclass(frozen=True)
class SpendCap:
    tag: str  # the compute requirement tag of the cluster's pools
    allowance_id: str
    hours: int

    def labels(self) -> dict[str, str]:
        return {TAG_LABEL: self.tag, ALLOWANCE_LABEL: self.allowance_id, HOURS_LABEL: str(self.hours)}

    @classmethod
    def from_labels(cls, labels: dict[str, str]) -> SpendCap | None:
        if TAG_LABEL not in labels or ALLOWANCE_LABEL not in labels:
            return None
        return cls(labels[TAG_LABEL], labels[ALLOWANCE_LABEL], int(labels.get(HOURS_LABEL, "0") or 0))

    def describe(self) -> str:
        return f"its spend cap of {self.hours} node-hours (max_node_hours / max_cost)"


def create(client: PlatformClient, call: Call, namespace: str, name: str, hours: int) -> SpendCap:
    """A hard allowance of `hours` instance-hours on the compute requirements this cluster will tag."""
    tag = f"{name}-cap-{secrets.token_hex(4)}"
    allowance = RequirementsAllowance(
        description=(DESCRIPTION_PREFIX + f"{namespace}/{name}")[: Allowance.DESCRIPTION_MAX_LENGTH],
        namespace=namespace,
        tag=tag,
        allowedHours=hours,
        effectiveFrom=datetime.now(UTC),
        resetType=AllowanceResetType.NONE,
        limitEnforcement=AllowanceLimitEnforcement.HARD,
        hardLimitGraceMinutes=0,
        monitoredStatuses=list(BILLED),
    )
    created = call(partial(client.allowances_client.add_allowance, allowance), "create spend cap allowance")
    if created.id is None:
        raise InvalidRequestException("the platform returned the spend cap allowance without an id")
    return SpendCap(tag, created.id, hours)


def remaining_hours(client: PlatformClient, call: Call, cap: SpendCap) -> float:
    allowance = call(partial(client.allowances_client.get_allowance_by_id, cap.allowance_id), "get spend cap")
    return float(allowance.remainingHours or 0.0)


def delete(client: PlatformClient, call: Call, cap: SpendCap) -> None:
    """Delete the cap's allowance (idempotent: one already gone is fine)."""
    try:
        call(partial(client.allowances_client.delete_allowance_by_id, cap.allowance_id), "delete spend cap")
    except InvalidRequestException:
        pass  # already deleted


def refuse_over_cap(client: PlatformClient, call: Call, cluster_name: str, labels: dict[str, str]) -> None:
    """A capped cluster whose cap is used up takes no new node: say so, before asking the platform."""
    cap = SpendCap.from_labels(labels)
    if cap is not None and remaining_hours(client, call, cap) <= 0:
        raise SpendCapError(
            f"cluster {cluster_name} has used up {cap.describe()}: the platform takes no new nodes "
            "for it; shut it down, and give the next run a higher cap if it needs one"
        )


def lost_to_cap(
    client: PlatformClient, call: Call, cluster_name: str, labels: dict[str, str], tasks: Sequence[Task]
) -> str:
    """Why nodes of a capped cluster were lost, when its cap is used up ("" otherwise)."""
    cap = SpendCap.from_labels(labels)
    if cap is None or not any(machine_lost(t) for t in tasks):
        return ""
    if remaining_hours(client, call, cap) > 0:
        return ""
    return (
        f"cluster {cluster_name} used up {cap.describe()}: the platform ended its instances "
        "(a spend cap, not a failure of the code it ran)"
    )


def live_caps(client: PlatformClient, call: Call) -> list[str]:
    """RayDog's spend cap allowances that still exist (for the leak check)."""
    search = AllowanceSearch(description=DESCRIPTION_PREFIX)
    found: list[Allowance] = call(
        partial(lambda s: client.allowances_client.get_allowances(s).list_all(), search), "list allowances"
    )
    return [
        f"allowance {a.description} ({a.id})"
        for a in found
        if (a.description or "").startswith(DESCRIPTION_PREFIX)
    ]
