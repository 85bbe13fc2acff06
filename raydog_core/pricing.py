"""What a cluster costs: the plan before it is built, and the bill after it has gone.

A backend answers for its own nodes (`Backend.plan` gives a `PlanQuote`: what each pool runs on and its
price per node-hour, and the platform's allowances that would cover it); the arithmetic and the table
are here, once for every backend. Locally nodes are processes of this machine and cost nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from raydog_core.errors import SpecError
from raydog_core.spec import NodeResources


@dataclass(frozen=True)
class PoolQuote:
    """One pool of a plan: how many nodes, what each runs on, and what a node-hour costs there."""

    pool: str  # how the spec names the pool ("head", "worker_pools.0", "add_worker_pool")
    role: str
    count: int
    resources: NodeResources
    machine: str  # what each node runs on, as the backend names it ("m5.large, AWS eu-west-2, on-demand")
    price_per_node_hour: float | None  # None: the platform has no price for it
    capacity: str = "on-demand"  # on-demand, spot, spot-first, ... (backends/yellowdog/quotes.py)

    @property
    def may_run_on_spot(self) -> bool:
        return "spot" in self.capacity


@dataclass(frozen=True)
class AllowanceHeadroom:
    """A platform allowance (a budget of instance-hours) that would cover some of the cluster's nodes."""

    allowance_id: str
    description: str
    remaining_hours: float
    covered_nodes: int  # nodes of this cluster it counts
    hard: bool  # hard enforcement: exhausted, it terminates the instances it covers

    def hours_at_full_size(self) -> float:
        """How long the cluster can run at full size before this allowance is exhausted."""
        return self.remaining_hours / self.covered_nodes if self.covered_nodes else math.inf


@dataclass(frozen=True)
class PlanQuote:
    """A backend's answer for a planned cluster; `lifetime` is the one its nodes would really get."""

    pools: list[PoolQuote]
    currency: str | None
    lifetime: timedelta | None
    allowances: list[AllowanceHeadroom] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterPlan:
    """`RayDogCluster.plan()`: what `build()` would start and what it would cost, before anything exists.

    `cost_per_hour` is every node running at once; `worst_case_cost` is that for the whole lifetime
    (None when a price or the lifetime is unknown). `problems` would stop the build (e.g. an exhausted
    allowance); `warnings` would not (e.g. an allowance that runs out before the lifetime ends).
    """

    cluster_name: str
    backend: str
    pools: list[PoolQuote]
    currency: str | None
    lifetime: timedelta | None
    cost_per_hour: float | None
    worst_case_cost: float | None
    allowances: list[AllowanceHeadroom]
    warnings: list[str]
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def node_count(self) -> int:
        return sum(pool.count for pool in self.pools)

    @classmethod
    def from_quote(cls, cluster_name: str, backend: str, quote: PlanQuote) -> ClusterPlan:
        prices = [pool.price_per_node_hour for pool in quote.pools]
        per_hour = (
            None if None in prices else sum(p.count * (p.price_per_node_hour or 0.0) for p in quote.pools)
        )
        worst = None
        if per_hour is not None and (per_hour == 0 or quote.lifetime is not None):
            worst = per_hour * (quote.lifetime.total_seconds() / 3600 if quote.lifetime else 0.0)
        warnings = list(quote.warnings)
        warnings += [
            f"the {pool.pool} node may run on spot instances ({pool.capacity}, allowed by "
            "head_node_allow_spot): a reclaimed head ends the whole cluster (a lost worker is started again)"
            for pool in quote.pools
            if pool.role == "head" and pool.may_run_on_spot
        ]
        problems = []
        lifetime_h = quote.lifetime.total_seconds() / 3600 if quote.lifetime else math.inf
        for allowance in quote.allowances:
            name = allowance.description or allowance.allowance_id
            if allowance.remaining_hours <= 0:
                problems.append(
                    f"allowance {name!r} is exhausted: the platform provisions none of the "
                    f"{allowance.covered_nodes} node(s) it covers (boost it, or ask its owner)"
                )
            elif allowance.hours_at_full_size() < lifetime_h:
                ending = "terminates its nodes" if allowance.hard else "refuses new nodes"
                warnings.append(
                    f"allowance {name!r} has {allowance.remaining_hours:.1f} instance-hours left: at full size "
                    f"the cluster uses them up after {allowance.hours_at_full_size():.1f} h, then the platform "
                    f"{ending}"
                )
        return cls(
            cluster_name=cluster_name,
            backend=backend,
            pools=list(quote.pools),
            currency=quote.currency,
            lifetime=quote.lifetime,
            cost_per_hour=per_hour,
            worst_case_cost=worst,
            allowances=list(quote.allowances),
            warnings=warnings,
            problems=problems,
        )

    def table(self) -> str:
        """A small fixed-width table for a terminal or a log."""
        money = _money(self.currency)
        rows = [("POOL", "NODES", "CPUS", "GPUS", "MEMORY", "MACHINE", "PER NODE-HOUR")]
        for pool in self.pools:
            r = pool.resources
            rows.append(
                (
                    pool.pool,
                    str(pool.count),
                    str(r.num_cpus),
                    str(r.num_gpus or 0),
                    f"{r.memory_mb} MB",
                    pool.machine,
                    money(pool.price_per_node_hour),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [f"plan for cluster {self.cluster_name} ({self.backend}):"]
        lines += [
            "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows
        ]
        lifetime = _duration(self.lifetime)
        lines.append(f"  {self.node_count} node(s); estimated cost per hour: {money(self.cost_per_hour)}")
        lines.append(f"  worst case over the lifetime ({lifetime}): {money(self.worst_case_cost)}")
        for allowance in self.allowances:
            lines.append(
                f"  allowance {allowance.description or allowance.allowance_id!r}: "
                f"{allowance.remaining_hours:.1f} instance-hours left, covers {allowance.covered_nodes} node(s)"
                f" ({'hard' if allowance.hard else 'soft'} limit)"
            )
        lines += [f"  warning: {warning}" for warning in self.warnings]
        lines += [f"  problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


@dataclass(frozen=True)
class ClusterUsage:
    """What a cluster used, from the backend's own records once it is shut down: node-hours (each node
    from its start to its end) and their cost (None when some node's price is unknown)."""

    node_hours: float
    cost: float | None
    currency: str | None = None

    def describe(self) -> str:
        return f"{self.node_hours:.3f} node-hours, cost {_money(self.currency)(self.cost)}"


@dataclass(frozen=True)
class SpendStatus:
    """How much of a capped cluster's spend cap is used, as the platform counts it."""

    used_hours: float
    cap_hours: int


def spend_cap_hours(
    max_node_hours: int | None, max_cost: float | None, plan: ClusterPlan | None
) -> int | None:
    """The cap in whole node-hours (what a platform allowance counts): max_node_hours, and max_cost at the
    dearest price of the plan's pools (so the cost never passes max_cost), whichever is lower."""
    caps = [max_node_hours] if max_node_hours is not None else []
    if max_cost is not None:
        if plan is None:
            raise SpecError("max_cost", "needs the cluster's plan to turn into node-hours")
        unpriced = [p.pool for p in plan.pools if p.price_per_node_hour is None]
        if unpriced:
            raise SpecError(
                "max_cost", f"the platform has no price for pools {unpriced}", "give max_node_hours instead"
            )
        dearest = max(p.price_per_node_hour or 0.0 for p in plan.pools)
        if dearest <= 0:
            raise SpecError("max_cost", "the cluster's nodes cost nothing", "give max_node_hours instead")
        hours = math.floor(max_cost / dearest)
        if hours < 1:
            raise SpecError(
                "max_cost",
                f"{max_cost} {plan.currency or ''} buys less than one node-hour at {dearest} per node-hour",
                "raise max_cost",
            )
        caps.append(hours)
    return min(caps) if caps else None


def _money(currency: str | None) -> Callable[[float | None], str]:
    def render(value: float | None) -> str:
        if value is None:
            return "unknown"
        return f"{value:.4f} {currency}" if currency else f"{value:.2f}"

    return render


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "unbounded"
    hours = value.total_seconds() / 3600
    return f"{hours:g} h"


def price_of(prices: Sequence[float | None]) -> float | None:
    """A node-hour's price where a node may come from any of several sources: the dearest (the plan is a
    ceiling), or None when any source has no price."""
    if not prices or None in prices:
        return None
    return max(p for p in prices if p is not None)
