"""A daemon thread that calls one function every few seconds until stopped: the clock of the watches
a builder runs beside a cluster it holds (its spend, its nodes)."""

from __future__ import annotations

import threading
from collections.abc import Callable


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
