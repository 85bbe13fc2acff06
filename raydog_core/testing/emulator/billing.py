"""Money on the emulated platform: the instance price list and allowances.

Prices are per instance-hour, keyed by provider, region, instance type and usage type (on-demand or
spot), as the platform's cloud-info service lists them. Allowances are budgets of *instance-hours*
(the platform has no money budget): each counts the hours that the instances it covers spend in its
monitored statuses since it became effective (or since its last reset). An exhausted allowance refuses
new provisioning that it covers (soft and hard alike); a hard one also terminates the instances it
covers once its grace period has passed.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from raydog_core.testing.emulator import wire
from raydog_core.testing.emulator.entities import ComputeRequirement, Instance
from raydog_core.testing.emulator.wire import compact, invalid, timestamp

ALLOWANCE_TYPES = frozenset(
    wire.MODEL + kind
    for kind in ("AccountAllowance", "RequirementAllowance", "RequirementsAllowance", "SourceAllowance")
)
DESCRIPTION_MAX_LENGTH = 100  # Allowance.DESCRIPTION_MAX_LENGTH in the SDK
CREATED_BY = "ydid:app:000000:emulator"  # who the emulator says created what (its one application)


@dataclass(frozen=True)
class InstancePrice:
    provider: str
    region: str
    instance_type: str
    usage_type: str  # ON_DEMAND | SPOT
    value: float  # per instance-hour
    currency: str = "USD"

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "region": self.region,
            "instanceType": self.instance_type,
            "usageType": self.usage_type,
            "operatingSystemLicence": "NONE",
            "price": {"currency": self.currency, "value": self.value},
        }

    def matches(self, query: dict[str, list[str]]) -> bool:
        def wanted(key: str, value: str) -> bool:
            values = query.get(key)
            return not values or value in values

        return (
            wanted("providers", self.provider)
            and wanted("region", self.region)
            and wanted("instanceType", self.instance_type)
            and wanted("usageTypes", self.usage_type)
            and wanted("operatingSystemLicences", "NONE")
            and not query.get("subRegion")
        )


# A small price list for the emulator's default sources (per hour, USD; of the order of real list prices).
DEFAULT_PRICES = (
    InstancePrice("AWS", "eu-west-2", "m5.large", "ON_DEMAND", 0.111),
    InstancePrice("AWS", "eu-west-2", "m5.large", "SPOT", 0.042),
    InstancePrice("AWS", "eu-west-2", "m5.xlarge", "ON_DEMAND", 0.222),
    InstancePrice("AWS", "eu-west-2", "m5.xlarge", "SPOT", 0.081),
    InstancePrice("AWS", "eu-west-2", "g4dn.xlarge", "ON_DEMAND", 0.615),
    InstancePrice("AWS", "eu-west-2", "g4dn.xlarge", "SPOT", 0.225),
)


@dataclass
class Allowance:
    """An allowance as the client sent it (`spec`), plus what the platform assigns and keeps."""

    spec: dict[str, Any]
    id: str = field(default_factory=lambda: wire.new_id("allow"))
    exhausted_at: datetime | None = None  # when its remaining hours first reached zero

    @classmethod
    def create(cls, body: Any) -> Allowance:
        """Validate a client's allowance the way the SDK's model requires it."""
        if not isinstance(body, dict):
            raise invalid("the request body must be an allowance")
        if body.get("type") not in ALLOWANCE_TYPES:
            raise invalid(f"Unknown allowance type {body.get('type')!r}")
        for key in ("effectiveFrom", "resetType", "limitEnforcement", "monitoredStatuses"):
            if body.get(key) in (None, ""):
                raise invalid(f"'{key}' is required")
        kind = body["type"].rpartition(".")[2]
        if kind == "RequirementAllowance" and not body.get("requirementId"):
            raise invalid("'requirementId' is required")
        if kind == "SourceAllowance" and not body.get("sourceId"):
            raise invalid("'sourceId' is required")
        if len(body.get("description") or "") > DESCRIPTION_MAX_LENGTH:
            raise invalid(f"'description' is longer than {DESCRIPTION_MAX_LENGTH} characters")
        if int(body.get("allowedHours") or 0) < 0:
            raise invalid("'allowedHours' must not be negative")
        if body["resetType"] != "NONE" and not body.get("resetInterval"):
            raise invalid("'resetInterval' is required when 'resetType' is not NONE")
        spec = {k: v for k, v in body.items() if k not in ("id", "createdById", "remainingHours")}
        return cls(spec)

    @property
    def kind(self) -> str:
        return str(self.spec["type"]).rpartition(".")[2]

    @property
    def hard(self) -> bool:
        return self.spec.get("limitEnforcement") == "HARD"

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=int(self.spec.get("hardLimitGraceMinutes") or 0))

    def covers(self, compute: ComputeRequirement) -> bool:
        """Whether instances of this compute requirement count against this allowance."""
        spec = self.spec
        if self.kind == "AccountAllowance":
            return True
        if self.kind == "RequirementAllowance":
            return spec.get("requirementId") == compute.id
        if self.kind == "SourceAllowance":
            return spec.get("sourceId") in (compute.source_id, compute.source.id)
        return (
            spec.get("namespace") in (None, compute.namespace)
            and spec.get("tag") in (None, compute.tag)
            and spec.get("requirementCreatedFromId") in (None, compute.template_id)
            and spec.get("requirementCreatedById") in (None, CREATED_BY)
        )

    def window(self, now: datetime) -> tuple[datetime, datetime]:
        """The period whose usage counts now: from the start (or the last reset) to now (or the end)."""
        start = wire.parse_time(self.spec["effectiveFrom"])
        until = wire.parse_time(self.spec["effectiveUntil"]) if self.spec.get("effectiveUntil") else None
        end = min(now, until) if until else now
        interval = int(self.spec.get("resetInterval") or 0)
        reset = self.spec.get("resetType")
        while interval and reset in ("DAYS", "MONTHS"):
            following = _add(start, interval, reset)
            if following > end:
                break
            start = following
        return start, end

    def remaining_hours(self, instances: list[Instance], now: datetime) -> float:
        start, end = self.window(now)
        statuses = set(self.spec.get("monitoredStatuses") or [])
        used = sum(i.hours_in(statuses, start, end) for i in instances if self.covers(i.requirement))
        allowed = int(self.spec.get("allowedHours") or 0) + int(self.spec.get("boostHours") or 0)
        return allowed - used

    def to_json(self, instances: list[Instance], now: datetime) -> dict[str, Any]:
        data = dict(self.spec)
        data.update(
            compact(
                {
                    "id": self.id,
                    "createdById": CREATED_BY,
                    "remainingHours": self.remaining_hours(instances, now),
                    "allowedHours": int(self.spec.get("allowedHours") or 0),
                    "effectiveFrom": timestamp(wire.parse_time(self.spec["effectiveFrom"])),
                    "effectiveUntil": timestamp(wire.parse_time(self.spec["effectiveUntil"]))
                    if self.spec.get("effectiveUntil")
                    else None,
                }
            )
        )
        return data

    def matches(self, query: dict[str, list[str]]) -> bool:
        description = query.get("description") or [""]
        enforcement = query.get("limitEnforcement")
        return description[0] in (self.spec.get("description") or "") and (
            not enforcement or self.spec.get("limitEnforcement") in enforcement
        )


def _add(moment: datetime, count: int, unit: str) -> datetime:
    if unit == "DAYS":
        return moment + timedelta(days=count)
    month = moment.month - 1 + count
    year, month = moment.year + month // 12, month % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))
