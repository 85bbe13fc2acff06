"""What a YellowDog pool would cost, asked of the platform before anything is created.

A compute requirement template names its compute *sources* (source templates); each source says the
provider, region and instance type of its instances and whether they are spot, and the platform's price
list (cloud info) gives a price per instance-hour for that. A node may come from any source of its
template, so a pool is quoted at the dearest one. Allowances are the platform's budgets of
instance-hours; the ones that would cover the cluster's compute requirements are reported with what is
left of them.

What kind of instances a template gives is its `capacity`: on-demand, spot, or spot-first (a waterfall
template whose first source is spot and a later one on-demand: spot while the platform has it, then
on-demand). That is how a pool is made spot-first on YellowDog: the provisioning strategy belongs to the
template, which the spec names.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TypeVar

from yellowdog_client.model import (
    AccountAllowance,
    Allowance,
    AllowanceLimitEnforcement,
    AllowanceSearch,
    CloudProvider,
    ComputeRequirementStaticTemplate,
    ComputeRequirementTemplate,
    Instance,
    InstancePricing,
    InstanceStatus,
    InstanceTypePrice,
    InstanceTypePriceSearch,
    RequirementsAllowance,
    SourceAllowance,
    UsageType,
)
from yellowdog_client.model.exceptions import NotAuthorisedException
from yellowdog_client.platform_client import PlatformClient

from raydog_core.pricing import AllowanceHeadroom, price_of

T = TypeVar("T")


class Call(Protocol):
    """The backend's way to call the platform (retries; a rejected key becomes a SpecError)."""

    def __call__(self, call: Callable[[], T], what: str) -> T: ...


@dataclass(frozen=True)
class SourceQuote:
    source_template_id: str
    machine: str  # "m5.large, AWS eu-west-2, on-demand"
    price: float | None
    currency: str | None
    spot: bool


ON_DEMAND, SPOT, SPOT_FIRST, SPOT_OR_ON_DEMAND = "on-demand", "spot", "spot-first", "spot or on-demand"
UNKNOWN_CAPACITY = "unknown"  # a dynamic template: its sources are chosen at provisioning


def capacity_of(spot_flags: Sequence[bool], strategy: str | None) -> str:
    """What kind of instances a template with these sources (in order) and this strategy gives."""
    if not spot_flags:
        return UNKNOWN_CAPACITY
    if not any(spot_flags):
        return ON_DEMAND
    if all(spot_flags):
        return SPOT
    if spot_flags[0] and "Waterfall" in (strategy or ""):
        return SPOT_FIRST
    return SPOT_OR_ON_DEMAND


@dataclass(frozen=True)
class TemplateQuote:
    """A template's sources and what a node-hour costs from each."""

    template_ref: str  # as the spec gives it
    template_id: str | None
    sources: list[SourceQuote]
    note: str = ""  # why there is no price, when there is none
    strategy: str | None = None  # the template's provisioning strategy type

    @property
    def price(self) -> float | None:
        return price_of([s.price for s in self.sources])

    @property
    def currency(self) -> str | None:
        return next((s.currency for s in self.sources if s.currency), None)

    @property
    def capacity(self) -> str:
        return capacity_of([s.spot for s in self.sources], self.strategy)

    @property
    def machine(self) -> str:
        machines = " | ".join(s.machine for s in self.sources) or self.note
        return f"{SPOT_FIRST}: {machines}" if self.capacity == SPOT_FIRST else machines


@dataclass(frozen=True)
class Machine:
    """What the price list is keyed by: where an instance runs, its type, and spot or on-demand."""

    provider: CloudProvider | None
    region: str | None
    instance_type: str | None
    spot: bool

    def describe(self) -> str:
        provider = self.provider.value if self.provider else "?"
        return f"{self.instance_type}, {provider} {self.region}, {'spot' if self.spot else 'on-demand'}"


class PriceList:
    """The platform's price per instance-hour of a machine, each asked once."""

    def __init__(self, client: PlatformClient, call: Call) -> None:
        self._client = client
        self._call = call
        self._prices: dict[Machine, tuple[float | None, str | None]] = {}

    def price(self, machine: Machine) -> tuple[float | None, str | None]:
        """(price per hour, currency); (None, None) when the platform lists none."""
        if machine not in self._prices:
            search = InstanceTypePriceSearch(
                providers=[machine.provider] if machine.provider else None,
                region=machine.region,
                instanceType=machine.instance_type,
                usageTypes=[UsageType.SPOT if machine.spot else UsageType.ON_DEMAND],
            )
            prices = self._client.cloud_info_client
            found: list[InstanceTypePrice] = self._call(
                partial(lambda s: prices.get_instance_type_prices(s).list_all(), search), "get prices"
            )
            listed = [p.price for p in found if p.price is not None and p.price.value is not None]
            top = max(listed, key=lambda price: price.value or 0.0, default=None)
            self._prices[machine] = (
                (top.value, top.currency.value if top.currency else None) if top else (None, None)
            )
        return self._prices[machine]


def source_machines(
    client: PlatformClient, call: Call, template: ComputeRequirementTemplate
) -> list[tuple[str, Machine]]:
    """(source template id, machine) of each of a static template's sources, in the template's order;
    none for a dynamic template (its sources are chosen at provisioning)."""
    if not isinstance(template, ComputeRequirementStaticTemplate):
        return []
    compute = client.compute_client
    machines = []
    for usage in template.sources:
        source_template = call(
            partial(compute.get_compute_source_template, usage.sourceTemplateId),
            "get compute source template",
        )
        source = source_template.source
        # On-premise and simulator sources carry no spot flag: they are on-demand.
        spot = source.instancePricing == InstancePricing.SPOT_ONLY or bool(getattr(source, "spot", False))
        machine = Machine(source.provider, source.region, usage.instanceType or source.instanceType, spot)
        machines.append((usage.sourceTemplateId, machine))
    return machines


def quote_template(
    prices: PriceList, ref: str, template: ComputeRequirementTemplate, machines: Sequence[tuple[str, Machine]]
) -> TemplateQuote:
    """The price of a node-hour from this template, from its sources' machines and the price list."""
    if not isinstance(template, ComputeRequirementStaticTemplate):
        return TemplateQuote(ref, template.id, [], "dynamic template: sources chosen at provisioning")
    quotes = []
    for source_id, machine in machines:
        price, currency = prices.price(machine)
        quotes.append(SourceQuote(source_id, machine.describe(), price, currency, machine.spot))
    return TemplateQuote(ref, template.id, quotes, strategy=template.strategyType)


def instance_usage(
    instances: Sequence[Instance], prices: PriceList, now: datetime
) -> tuple[float, float | None, str | None]:
    """(instance-hours, their cost or None if some price is unknown, currency) of these instances, from
    the platform's records: each from its creation to its termination (or now, if still alive)."""
    hours = 0.0
    cost: float | None = 0.0
    currency = None
    for instance in instances:
        if instance.createdTime is None:
            continue
        ended = instance.status == InstanceStatus.TERMINATED and instance.statusChangedTime
        end = instance.statusChangedTime if ended and instance.statusChangedTime else now
        used = max((end - instance.createdTime).total_seconds(), 0.0) / 3600
        hours += used
        price, unit = prices.price(
            Machine(instance.provider, instance.region, instance.instanceType, bool(instance.spot))
        )
        currency = currency or unit
        cost = None if cost is None or price is None else cost + used * price
    return hours, cost, currency


@dataclass(frozen=True)
class PlannedPool:
    """What allowance matching needs of a pool: its node count and where its nodes would come from."""

    count: int
    quote: TemplateQuote


def allowance_headroom(
    client: PlatformClient, call: Call, namespace: str, pools: Sequence[PlannedPool]
) -> tuple[list[AllowanceHeadroom], list[str]]:
    """The effective allowances that would count this cluster's instances, and warnings.

    A compute requirement RayDog creates has the cluster's namespace, no tag, and the pool's template:
    allowances for the whole account, for requirements of that namespace or template, and for the
    template's sources cover it. An allowance for one existing requirement cannot cover a new one.
    """
    try:
        allowances = call(
            lambda: client.allowances_client.get_allowances(AllowanceSearch()).list_all(), "list allowances"
        )
    except NotAuthorisedException:
        return [], ["this application key may not read allowances: headroom not checked"]
    now = datetime.now(UTC)
    found = []
    for allowance in allowances:
        if not _effective(allowance, now):
            continue
        covered = sum(pool.count for pool in pools if _covers(allowance, namespace, pool.quote))
        if covered:
            found.append(
                AllowanceHeadroom(
                    allowance_id=allowance.id or "",
                    description=allowance.description or "",
                    remaining_hours=float(allowance.remainingHours or 0.0),
                    covered_nodes=covered,
                    hard=allowance.limitEnforcement == AllowanceLimitEnforcement.HARD,
                )
            )
    return found, []


def _effective(allowance: Allowance, now: datetime) -> bool:
    return allowance.effectiveFrom <= now and (
        allowance.effectiveUntil is None or allowance.effectiveUntil > now
    )


def _covers(allowance: Allowance, namespace: str, quote: TemplateQuote) -> bool:
    if isinstance(allowance, AccountAllowance):
        return True
    if isinstance(allowance, SourceAllowance):
        return allowance.sourceId in {s.source_template_id for s in quote.sources}
    if isinstance(allowance, RequirementsAllowance):
        return (
            allowance.namespace in (None, namespace)
            and allowance.tag is None
            and allowance.requirementCreatedFromId in (None, quote.template_ref, quote.template_id)
        )
    return False
