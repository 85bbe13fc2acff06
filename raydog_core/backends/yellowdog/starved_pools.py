"""Pools whose waiting tasks have no node coming, found so they can be resized.

A worker pool is resized when a node is added (`add_nodes`), against the nodes it has at that moment.
A node that has just died still counts there: its instance is running as far as the platform knows,
until the platform notices it is gone. If Ray's autoscaler replaces the node in that window (it sees
the raylet gone within seconds), the resize asks for nothing new, the dead instance then goes, and the
replacement's task waits for a node nobody provisions. So each listing looks at tasks that have waited
a while: when their pool expects fewer nodes than it has unfinished tasks, the pool is short, and the
backend resizes it. Booting instances count as expected nodes, so a slow boot is never mistaken for a
short pool.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from yellowdog_client.model import Task

STARVED_AFTER_S = 10.0  # a task waits this long before its pool is checked; also the gap between checks


class WaitingTasks:
    """When this process first saw each task waiting (the platform reports no such time)."""

    def __init__(self, starved_after_s: float | None = None) -> None:
        self._since: dict[str, float] = {}
        self._starved_after_s = STARVED_AFTER_S if starved_after_s is None else starved_after_s

    def long_waiting(self, tasks: Iterable[Task]) -> list[Task]:
        """The tasks that have waited at least `starved_after_s`; forgets tasks that stopped waiting."""
        now = time.monotonic()
        waiting = [t for t in tasks if t.id and t.status is not None and t.status.waiting]
        self._since = {t.id: self._since.get(t.id, now) for t in waiting if t.id}
        return [t for t in waiting if t.id and now - self._since[t.id] >= self._starved_after_s]

    def checked(self, tasks: Iterable[Task]) -> None:
        """Their pool was just checked: look again only after another `starved_after_s`."""
        now = time.monotonic()
        for task in tasks:
            if task.id in self._since:
                self._since[task.id] = now
