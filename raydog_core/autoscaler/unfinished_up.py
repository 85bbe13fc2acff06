"""A `ray up` that created a head but never finished leaves nothing behind.

Between the head's creation and the moment it is reported up to date, `ray up` runs Ray's updater
(file mounts, setup commands) in a daemon thread and waits for Ray on the head. A Ctrl+C or SIGTERM
there, or a failing setup command, ends the process without passing through the provider again, so
the cluster would be left running (and, on YellowDog, paid for). The guard is armed when this process
creates a head and disarmed when `ray up` reports it up to date; if the process exits while it is
armed, the cluster is shut down. Only the process that created the head arms it: a `ray up` that
reuses a running cluster, `ray down` and the monitor on the head never do.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable

from raydog_core.signals import unwind_on_sigterm

log = logging.getLogger("raydog")


class UnfinishedUpGuard:
    """Runs `teardown` at exit unless `disarm()` came first; SIGTERM takes the Ctrl+C path meanwhile."""

    def __init__(self, describe: str) -> None:
        self._describe = describe
        self._teardown: Callable[[], None] | None = None
        self._undo_sigterm: Callable[[], None] | None = None
        self.abandoned = threading.Event()  # set once teardown starts: waiters give up

    @property
    def armed(self) -> bool:
        return self._teardown is not None

    def arm(self, teardown: Callable[[], None]) -> None:
        self._teardown = teardown
        self.abandoned.clear()
        atexit.register(self._at_exit)
        if self._undo_sigterm is None:
            self._undo_sigterm = unwind_on_sigterm()

    def disarm(self) -> None:
        self._teardown = None
        atexit.unregister(self._at_exit)
        undo, self._undo_sigterm = self._undo_sigterm, None
        if undo is not None:
            undo()

    def _at_exit(self) -> None:
        teardown, self._teardown = self._teardown, None
        if teardown is None:
            return
        log.error("`ray up` of %s did not finish: shutting down what it created", self._describe)
        print(
            f"RayDog: `ray up` of {self._describe} did not finish: shutting down what it created", flush=True
        )
        self.abandoned.set()
        teardown()
