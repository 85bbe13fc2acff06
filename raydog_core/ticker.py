"""A daemon thread that calls one function every few seconds until stopped: the clock of the watches
a builder runs beside a cluster it holds (its spend, its nodes, the demand Ray cannot place)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, Self


class Ticker:
    """Calls `tick()` every `interval_s` until `stop()`, or until `tick()` returns False."""

    def __init__(self, tick: Callable[[], bool], interval_s: float, name: str) -> None:
        self._tick = tick
        self._interval_s = interval_s
        self._name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s) and self._tick():
            pass


class WatchLogger(Protocol):
    """The run's logger, whichever orchestrator's (stdlib, Prefect's adapter, Airflow's structlog)."""

    def warning(self, msg: str, /, *args: Any) -> Any: ...

    def error(self, msg: str, /, *args: Any) -> Any: ...

    def debug(self, msg: str, /, *args: Any, exc_info: bool = ...) -> Any: ...


class Watch:
    """A look at a cluster every `interval_s` on a daemon thread, until stopped or until `look()` returns
    False. A look that fails is logged at debug level and the next round tries again: a watch beside a
    run must never break it."""

    def __init__(self, interval_s: float, thread_name: str, logger: WatchLogger, what: str) -> None:
        self._ticker = Ticker(self._tick, interval_s, thread_name)
        self._logger = logger
        self._what = what  # for the debug line: "read the spend cap of demo"

    def start(self) -> Self:
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()

    def look(self) -> bool:
        """One look; False ends the watch."""
        raise NotImplementedError

    def _tick(self) -> bool:
        try:
            return self.look()
        except Exception:  # the next round tries again
            self._logger.debug("could not %s", self._what, exc_info=True)
            return True
