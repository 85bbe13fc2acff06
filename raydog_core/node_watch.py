"""Looking at a cluster's nodes now and then while a builder holds it, where the backend heals a cluster
when its nodes are listed (`BackendCapabilities.heals_when_listing`: YellowDog resizes a pool short of
nodes for a task the platform started again after its machine was lost, `starved_pools`). Ray's
autoscaler lists every round; a cluster built by `RayDogCluster` and busy with Ray work is listed by
nobody else, so a reclaimed spot worker would otherwise wait for a node until the next `raydog status`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from raydog_core.ticker import Watch

log = logging.getLogger("raydog")

INTERVAL_S = 15.0


class NodeWatch(Watch):
    """Lists the nodes every `interval_s` (a daemon thread) until stopped."""

    def __init__(
        self, list_nodes: Callable[[], object], cluster: str, interval_s: float | None = None
    ) -> None:
        interval = INTERVAL_S if interval_s is None else interval_s
        super().__init__(interval, "raydog-nodes", log, f"list the nodes of cluster {cluster}")
        self._list_nodes = list_nodes

    def look(self) -> bool:
        self._list_nodes()
        return True
