"""Why isn't it scaling? Ray work that no node of the cluster can ever run, explained in the run's log.

A task or actor asking for resources no node offers (a GPU on a CPU cluster, a custom resource no pool
advertises, more CPUs than any node has) waits for ever, and from the orchestrator it looks like a
slow run. A RayDog cluster built by the builder does not grow by itself, so such work needs a pool
that offers it. This watch reads what Ray's monitor on the head reports (the demand it sees and each
node's resources, in the dashboard's `/api/cluster_status`) every few seconds; a demand no node can
fit, seen in two looks in a row, is logged once, with what the nodes offer and the fix, and nodes that
are still starting are named (they may be what the work waits for).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raydog_core.backends.base import NodeEnd, NodeInfo, NodeRole, NodeStatus
from raydog_core.ray_nodes import dashboard_get
from raydog_core.ticker import Watch, WatchLogger

INTERVAL_S = 10.0  # Ray's monitor updates its report every 5 s
Shape = Mapping[str, float]
# Ray's own bookkeeping resources, not what work asks for: left out of what nodes offer.
_HIDDEN = ("node:", "objectStoreMemory", "memory")


@dataclass(frozen=True)
class UnmetDemand:
    """Work asking for `shape`, `count` times, that no node of the cluster can fit."""

    shape: dict[str, float]
    count: int

    @property
    def key(self) -> str:
        return json.dumps(self.shape, sort_keys=True)


def cluster_status(base_url: str, token: str | None) -> dict[str, Any] | None:
    """Ray monitor's report from the head's dashboard; None while it is not answering.

    `base_url` must be an address the backend vouches for, or this client's tunnel to it: the token
    goes there."""
    payload = dashboard_get(base_url, "/api/cluster_status", token) or {}
    status = payload.get("data", {}).get("clusterStatus")
    return status if isinstance(status, dict) else None


def unmet_demands(status: Mapping[str, Any]) -> tuple[list[UnmetDemand], list[dict[str, float]]]:
    """The demands in a monitor report that fit no node, and what each node offers.

    The dashboard camel-cases every dict key of its answers, so nodes' resource names arrive
    camel-cased (`my_res` as `myRes`), while the demands, dicts inside lists, keep theirs: they are
    compared camel-cased."""
    report = status.get("loadMetricsReport") or {}
    nodes = [
        {name: float(pair[1]) for name, pair in usage.items() if not name.startswith(_HIDDEN)}
        for usage in (report.get("usageByNode") or {}).values()
    ]
    demands = [*(report.get("resourceDemand") or []), *(report.get("pgDemand") or [])]
    unmet = [
        UnmetDemand({name: float(amount) for name, amount in shape.items()}, int(count))
        for shape, count in demands
        if not any(_fits(shape, node) for node in nodes)
    ]
    return unmet, nodes


def _fits(shape: Shape, node: Shape) -> bool:
    return all(node.get(_camel_case(name), 0.0) >= amount for name, amount in shape.items())


def _camel_case(name: str) -> str:
    """How Ray's dashboard spells a key (`ray.dashboard.utils.to_camel_case`)."""
    first, *rest = name.split("_")
    return first + "".join(part.title() for part in rest)


def explain(
    cluster: str,
    demand: UnmetDemand,
    nodes: Sequence[Shape],
    starting: Sequence[NodeInfo],
    waited_s: Mapping[str, float] | None = None,
    failed: Sequence[NodeInfo] = (),
) -> str:
    """The warning for one unmet demand. `starting`: worker nodes not up yet, which may be what the work
    waits for: those still booting (for how long, by `waited_s`), told apart from those the platform
    cannot place at all (no capacity), which will not come. `failed`: worker nodes that failed (the last
    lines of the first one's log) or that the spend cap ended."""
    offers = "; ".join(sorted({_describe(node) for node in nodes})) or "no node is up"
    text = (
        f"cluster {cluster}: {demand.count} Ray task(s)/actor(s) wait for {_describe(demand.shape)}, which "
        f"no node of the cluster offers (its nodes offer: {offers})"
    )
    booting = [n for n in starting if not n.blocked_by]
    blocked = [n for n in starting if n.blocked_by]
    if booting:
        waited = waited_s or {}
        names = ", ".join(
            f"{n.node_id} for {waited[n.node_id]:.0f} s" if n.node_id in waited else n.node_id
            for n in booting
        )
        text += f"; {len(booting)} node(s) still starting ({names})"
    if blocked:
        text += f"; {len(blocked)} node(s) will get no machine: {blocked[0].blocked_by}"
    capped = [n for n in failed if n.ended_by == NodeEnd.SPEND_CAP]
    broken = [n for n in failed if n.ended_by != NodeEnd.SPEND_CAP]
    if capped:
        text += f"; the spend cap ended {len(capped)} node(s) ({', '.join(n.node_id for n in capped)})"
    if broken:
        tail = " / ".join(broken[0].detail.strip().splitlines()[-3:])
        text += f"; {len(broken)} node(s) failed, {broken[0].node_id}: {tail}"
    return text + (
        ". A RayDog cluster does not grow by itself: add a worker pool whose worker_node_resources offer "
        "it (num_cpus, num_gpus, resources), or ask for less in the task's resources"
    )


def _describe(shape: Shape) -> str:
    return ", ".join(f"{name} {amount:g}" for name, amount in sorted(shape.items())) or "nothing"


class DemandWatch(Watch):
    """Looks every `interval_s` and logs each unmet demand once, when it is seen in two looks in a row
    (a task that waits one round for a node that is joining is not unmet)."""

    def __init__(
        self,
        read_status: Callable[[], Mapping[str, Any] | None],
        list_nodes: Callable[[], list[NodeInfo]],
        cluster: str,
        logger: WatchLogger,
        interval_s: float | None = None,
    ) -> None:
        interval = INTERVAL_S if interval_s is None else interval_s
        super().__init__(interval, "raydog-demand", logger, f"read the demand of {cluster}")
        self._read_status = read_status
        self._list_nodes = list_nodes
        self._cluster = cluster
        self._seen_once: set[str] = set()
        self._reported: set[str] = set()
        self._pending_since: dict[str, float] = {}  # node -> when this watch first saw it starting

    @classmethod
    def on_dashboard(
        cls,
        dashboard_url: str,
        token: str | None,
        list_nodes: Callable[[], list[NodeInfo]],
        cluster: str,
        logger: WatchLogger,
    ) -> DemandWatch:
        """A watch reading the monitor's report from the head's dashboard at `dashboard_url` (an address
        the backend vouches for, or this client's tunnel to it: the token goes there)."""
        return cls(lambda: cluster_status(dashboard_url, token), list_nodes, cluster, logger)

    def check(self) -> list[str]:
        """One look; returns (and logs) what is explained for the first time."""
        status = self._read_status()
        if status is None:
            return []
        unmet, nodes = unmet_demands(status)
        keys = {demand.key for demand in unmet}
        fresh = [d for d in unmet if d.key in self._seen_once and d.key not in self._reported]
        self._seen_once = keys
        if not fresh:
            return []
        workers = [n for n in self._list_nodes() if n.role == NodeRole.WORKER]
        starting = [n for n in workers if n.status == NodeStatus.PENDING]
        failed = [n for n in workers if n.status == NodeStatus.FAILED]
        now = time.monotonic()
        self._pending_since = {n.node_id: self._pending_since.get(n.node_id, now) for n in starting}
        waited = {node: now - since for node, since in self._pending_since.items()}
        messages = [explain(self._cluster, demand, nodes, starting, waited, failed) for demand in fresh]
        for demand, message in zip(fresh, messages, strict=True):
            self._reported.add(demand.key)
            self._logger.warning("%s", message)
        return messages

    def look(self) -> bool:
        self.check()
        return True
