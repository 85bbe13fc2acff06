"""Looking at a cluster's nodes now and then while a builder holds it, where the backend heals a cluster
when its nodes are listed (`BackendCapabilities.heals_when_listing`: YellowDog resizes a pool short of
nodes for a task the platform started again after its machine was lost, `starved_pools`). Ray's
autoscaler lists every round; a cluster built by `RayDogCluster` and busy with Ray work is listed by
nobody else, so a reclaimed spot worker would otherwise wait for a node until the next `raydog status`."""

from __future__ import annotations

import logging
from collections.abc import Callable

from raydog_core.ticker import Ticker

log = logging.getLogger("raydog")

INTERVAL_S = 15.0


class NodeWatch:
    """Lists the nodes every `interval_s` (a daemon thread) until stopped; failures are logged at debug
    level and tried again next round: the watch must never break the run."""

    def __init__(
        self, list_nodes: Callable[[], object], cluster: str, interval_s: float | None = None
    ) -> None:
        self._list_nodes = list_nodes
        self._cluster = cluster
        self._ticker = Ticker(self._tick, INTERVAL_S if interval_s is None else interval_s, "raydog-nodes")

    def start(self) -> NodeWatch:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()

    def _tick(self) -> bool:
        try:
            self._list_nodes()
        except Exception:  # next round tries again
            log.debug("could not list the nodes of cluster %s", self._cluster, exc_info=True)
        return True
