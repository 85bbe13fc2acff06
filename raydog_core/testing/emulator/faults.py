"""Fault injection: what can go wrong on a real platform, on demand and reproducibly (seeded)."""

from __future__ import annotations

import random
import re
import threading
from dataclasses import dataclass, field


@dataclass
class Faults:
    """Knobs a test turns; all off by default. Change them at any time, they apply to the next request."""

    error_rate: float = 0.0  # share of API requests answered with a transient error, before any effect
    error_statuses: tuple[int, ...] = (429, 500, 502, 503)
    latency_s: float = 0.0  # added to every API answer
    boot_delay_s: float = 0.0  # time from provisioning to a node registering
    boot_delay_by_pool: dict[str, float] = field(default_factory=dict)  # slow boots for some pools (by name)
    fail_tasks: str | None = None  # regex on task names: such tasks exit with code 1 at once
    # regex on pool names: the provider has no capacity for such pools' instances, so none is provisioned
    # and their compute requirement's source reports ERRORED with a message, as a cloud short of a type
    no_capacity: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self.injected_errors = 0

    def transient_error(self) -> int | None:
        """The status of an injected transient error for this request, or None."""
        if self.error_rate <= 0:
            return None
        with self._lock:
            if self._random.random() >= self.error_rate:
                return None
            self.injected_errors += 1
            return self._random.choice(self.error_statuses)

    def boot_delay(self, pool_name: str) -> float:
        return self.boot_delay_by_pool.get(pool_name, self.boot_delay_s)

    def has_no_capacity(self, pool_name: str) -> bool:
        return bool(self.no_capacity and re.search(self.no_capacity, pool_name))

    def task_fails(self, task_name: str | None) -> bool:
        return bool(self.fail_tasks and task_name and re.search(self.fail_tasks, task_name))
