"""Compute requirement templates, checked and priced before anything is created.

Each node's machine comes from its pool's template, so a plan is checked by looking every template up
with the application key (which checks the key too), and priced from the templates' sources
(`quotes`). The head's template may not give spot instances unless the spec allows it: a reclaimed head
ends the whole cluster.
"""

from __future__ import annotations

from collections.abc import Sequence

from yellowdog_client.model import ComputeRequirementTemplate
from yellowdog_client.model.exceptions import InvalidRequestException

from raydog_core.backends.base import ClusterOptions, NodeRole, PoolPlan
from raydog_core.backends.yellowdog import quotes
from raydog_core.backends.yellowdog.api import Api, present
from raydog_core.backends.yellowdog.requirements import DEFAULT_LIFETIME
from raydog_core.errors import SpecError
from raydog_core.pricing import PlanQuote, PoolQuote

TEMPLATE_FIELD = {
    NodeRole.HEAD: "head_node_compute_requirement_template_id",
    NodeRole.OBSERVABILITY: "observability_node_compute_requirement_template_id",
    NodeRole.WORKER: "worker_node_compute_requirement_template_id",
}


class Templates:
    """The templates this backend has checked, by the spec's reference, and their sources' machines."""

    def __init__(self, api: Api) -> None:
        self._api = api
        self.checked: dict[str, ComputeRequirementTemplate] = {}
        self._machines: dict[str, list[tuple[str, quotes.Machine]]] = {}  # their sources, by the same

    def check_plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> None:
        """Every pool's template exists for this key (which checks the key too), before anything exists:
        each node's machine comes from its compute requirement template. The head's may not give spot
        instances unless the spec allows it: a reclaimed head ends the whole cluster."""
        for pool in pools:
            ref = self.check(pool.yellowdog.compute_requirement_template_id, template_field(pool))
            if pool.role == NodeRole.HEAD and not options.head_on_spot_allowed:
                self._refuse_spot(ref, template_field(pool))

    def _refuse_spot(self, ref: str, field: str) -> None:
        machines = self._template_machines(ref)
        if any(machine.spot for _, machine in machines):
            kind = quotes.capacity_of([m.spot for _, m in machines], self.checked[ref].strategyType)
            raise SpecError(
                field,
                f"template {ref!r} gives {kind} instances: a reclaimed head ends the whole cluster "
                "(a lost worker is started again)",
                "give the head an on-demand template, or set head_node_allow_spot=True to accept it",
            )

    def _template_machines(self, ref: str) -> list[tuple[str, quotes.Machine]]:
        """The machines of a checked template's sources, asked of the platform once per template."""
        if ref not in self._machines:
            self._machines[ref] = quotes.source_machines(self._api.client, self._api.call, self.checked[ref])
        return self._machines[ref]

    def plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> PlanQuote:
        """check_plan, then each pool priced from its template's sources and the platform's price list,
        and the allowances that would cover the cluster."""
        self.check_plan(options, pools)
        client, call = self._api.client, self._api.call
        by_template: dict[str, quotes.TemplateQuote] = {}
        prices = quotes.PriceList(client, call)
        for pool in pools:
            ref = present(pool.yellowdog.compute_requirement_template_id, "template")
            if ref not in by_template:
                by_template[ref] = quotes.quote_template(
                    prices, ref, self.checked[ref], self._template_machines(ref)
                )
        planned = [
            quotes.PlannedPool(
                p.count, by_template[present(p.yellowdog.compute_requirement_template_id, "template")]
            )
            for p in pools
        ]
        pool_quotes = [
            PoolQuote(
                p.pool, p.role.value, p.count, p.resources, q.quote.machine, q.quote.price, q.quote.capacity
            )
            for p, q in zip(pools, planned, strict=True)
        ]
        warnings = [
            f"no price for {q.template_ref} ({q.machine}): the cost is unknown"
            for q in by_template.values()
            if q.price is None
        ]
        currencies = {q.currency for q in by_template.values() if q.currency}
        if len(currencies) > 1:
            warnings.append(
                f"templates are priced in several currencies ({sorted(currencies)}): totals mix them"
            )
        headroom, more = quotes.allowance_headroom(client, call, options.namespace, planned)
        return PlanQuote(
            pool_quotes,
            currency=min(currencies) if currencies else None,
            lifetime=options.lifetime or DEFAULT_LIFETIME,
            allowances=headroom,
            warnings=warnings + more,
        )

    def check(self, template: str | None, field: str) -> str:
        """The template, checked before anything is created: given, and known to the platform (to the key)."""
        if not template:
            raise SpecError(
                field, "required for backend 'yellowdog'", "give a compute requirement template id or name"
            )
        if template in self.checked:
            return template
        compute = self._api.client.compute_client
        namespace, _, name = template.rpartition("/")
        try:
            if template.startswith("ydid:") or not namespace:
                found = self._api.call(
                    lambda: compute.get_compute_requirement_template_by_id(template), "get template"
                )
            else:
                found = self._api.call(
                    lambda: compute.get_compute_requirement_template_by_name(namespace, name), "get template"
                )
        except InvalidRequestException as error:
            raise SpecError(
                field,
                f"compute requirement template {template!r} was not found ({error.message})",
                "give the id (ydid:crt:...) or 'namespace/name' of a template your application key can use",
            ) from None
        self.checked[template] = found
        return template


def template_field(pool: PoolPlan) -> str:
    """The spec field naming a pool's template: a worker pool's is inside its entry of worker_pools."""
    if pool.template_field:
        return pool.template_field
    field = TEMPLATE_FIELD[pool.role]
    return f"{pool.pool}.{field}" if pool.role == NodeRole.WORKER and pool.pool else field
