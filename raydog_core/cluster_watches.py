"""The watches a builder (`RayDogCluster`) runs beside a cluster it holds: its spend, its nodes, the Ray
work no node can run. One of each kind at a time (starting one again replaces it), all stopped together
when the builder lets the cluster go (`shut_down`, `leave`, `hand_over`): a watch never outlives its
holder's claim on the cluster.
"""

from __future__ import annotations

import logging

from raydog_core.demand_watch import DemandWatch
from raydog_core.errors import RayDogError
from raydog_core.lifecycle import ClusterSession
from raydog_core.node_watch import NodeWatch
from raydog_core.spend_watch import SpendWatch
from raydog_core.ticker import Watch, WatchLogger

log = logging.getLogger("raydog")


class ClusterWatches:
    """The running watches of one builder, by name ("spend", "nodes", "demand")."""

    def __init__(self) -> None:
        self._running: dict[str, Watch] = {}

    def watch_spend(
        self, session: ClusterSession, cluster_name: str, logger: WatchLogger | None = None
    ) -> SpendWatch:
        """Log the spend cap's thresholds into `logger` (default RayDog's)."""
        cluster_id = session.cluster_id
        watch = SpendWatch(lambda: session.backend.spend(cluster_id), cluster_name, logger or log)
        self._start("spend", watch)
        return watch

    def watch_demand(
        self,
        session: ClusterSession,
        dashboard_url: str | None,
        cluster_name: str,
        logger: WatchLogger | None = None,
    ) -> DemandWatch:
        """Explain Ray work no node can run, read from the dashboard at `dashboard_url`, into `logger`."""
        if dashboard_url is None:
            raise RayDogError("the cluster has no dashboard this client can reach: pass dashboard_url")
        watch = DemandWatch.on_dashboard(
            dashboard_url, session.token, session.nodes, cluster_name, logger or log
        )
        self._start("demand", watch)
        return watch

    def watch_nodes(self, session: ClusterSession, cluster_name: str) -> None:
        """Where listing heals the cluster (a reclaimed worker's task waiting for a node on YellowDog),
        list it now and then (`raydog_core.node_watch`); once, however often asked."""
        if session.backend.capabilities.heals_when_listing and "nodes" not in self._running:
            self._start("nodes", NodeWatch(session.nodes, cluster_name))

    def stop(self, *names: str) -> None:
        """The named watches, or all of them."""
        for name in names or list(self._running):
            watch = self._running.pop(name, None)
            if watch is not None:
                watch.stop()

    def _start(self, name: str, watch: Watch) -> None:
        self.stop(name)
        watch.start()
        self._running[name] = watch
