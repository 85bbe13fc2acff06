"""Watching a capped cluster's spend while it runs, so the orchestrator's log says it before the
platform acts: a warning once 80 % of the spend cap is used, an error once all of it is (the platform
then ends the cluster's nodes). The platform enforces the cap; this only reports on it."""

from __future__ import annotations

from collections.abc import Callable

from raydog_core.pricing import SpendStatus
from raydog_core.ticker import Watch, WatchLogger

WARN_SHARE = 0.8
INTERVAL_S = 60.0  # allowances count hours: a minute is fine-grained enough


class SpendWatch(Watch):
    """Reads the cap every `interval_s` and logs each threshold once."""

    def __init__(
        self,
        read: Callable[[], SpendStatus | None],
        cluster: str,
        logger: WatchLogger,
        interval_s: float | None = None,
    ) -> None:
        interval = INTERVAL_S if interval_s is None else interval_s
        super().__init__(interval, "raydog-spend", logger, f"read the spend cap of {cluster}")
        self._read = read
        self._cluster = cluster
        self._warned = self._ended = False

    def check(self) -> SpendStatus | None:
        """One look; logs a threshold the first time it is crossed."""
        status = self._read()
        if status is None:
            return None
        share = status.used_hours / status.cap_hours
        if share >= 1 and not self._ended:
            self._ended = self._warned = True
            self._logger.error(
                "cluster %s has used up its spend cap (%.1f of %d node-hours): the platform ends its nodes "
                "and takes no new ones",
                self._cluster,
                status.used_hours,
                status.cap_hours,
            )
        elif share >= WARN_SHARE and not self._warned:
            self._warned = True
            self._logger.warning(
                "cluster %s has used %.0f%% of its spend cap (%.1f of %d node-hours): at the cap the platform "
                "ends its nodes",
                self._cluster,
                100 * share,
                status.used_hours,
                status.cap_hours,
            )
        return status

    def look(self) -> bool:
        self.check()
        return not self._ended
