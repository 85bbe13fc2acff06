"""Leak accounting as a number: what a test (or a crashed client) left alive, counted per kind.

A fault test does not only ask "is anything left?": the fault matrix reports how many resources each
case leaked, so every check yields a count. Four kinds are counted:

- local processes of every cluster under a RAYDOG_HOME (`LocalBackend.live_resources()`), and the
  commands run for clusters on this machine (`ray exec`, `ray submit`: `raydog_core.commands`);
- live resources on a YellowDog emulator (work requirements, pools, compute requirements, instances
  and task processes: `Emulator.live_resources()`);
- Redis keys of a cluster in its tag store (`TagStore.keys()`), for each tag store given. A store
  nobody listens on any more holds no keys (it lived on the cluster's head), so it counts 0;
- files stopped clusters left under the RAYDOG_HOME: local temp dirs, token and password files
  (`raydog_core.testing.leftover_files`; with an emulator, its clusters are judged too).

```python
from raydog_core.testing.leaks import count_leaks
leaks = count_leaks(home, emulator=emulator, tag_stores=[store])
assert leaks.total == 0, leaks.describe()
```

Counting waits (bounded) for terminations already under way, so a teardown that is merely still
finishing is not reported as a leak, while one that never finishes is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from raydog_core import commands
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.home import raydog_home
from raydog_core.ports import is_listening
from raydog_core.tagstore import TagStore
from raydog_core.testing.leftover_files import leftover_files

DEFAULT_WAIT_S = 15.0
POLL_S = 0.2


class _LiveResources(Protocol):
    def live_resources(self) -> list[str]: ...

    def live_cluster_ids(self) -> list[str]: ...


@dataclass(frozen=True)
class LeakCount:
    """What is still alive, by kind; `total` is the number the fault matrix reports."""

    processes: list[str] = field(default_factory=list)
    emulator: list[str] = field(default_factory=list)
    redis_keys: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        kinds = (self.processes, self.emulator, self.redis_keys, self.commands, self.files)
        return sum(len(kind) for kind in kinds)

    def without(self, earlier: LeakCount | None) -> LeakCount:
        """What is left that was not left already in `earlier` (another test's leak is its own failure)."""
        if earlier is None:
            return self
        return LeakCount(
            processes=[p for p in self.processes if p not in earlier.processes],
            emulator=[e for e in self.emulator if e not in earlier.emulator],
            redis_keys=[k for k in self.redis_keys if k not in earlier.redis_keys],
            commands=[c for c in self.commands if c not in earlier.commands],
            files=[f for f in self.files if f not in earlier.files],
        )

    def describe(self) -> str:
        if not self.total:
            return "nothing left alive"
        parts = [
            *self.processes,
            *self.emulator,
            *(f"redis key {key}" for key in self.redis_keys),
            *self.commands,
            *self.files,
        ]
        return f"{self.total} resource(s) left alive: " + "; ".join(parts)


def count_leaks(
    home: str | Path | None = None,
    *,
    emulator: _LiveResources | None = None,
    tag_stores: Iterable[TagStore] = (),
    wait_s: float = DEFAULT_WAIT_S,
    besides: LeakCount | None = None,
) -> LeakCount:
    """Count what is alive under `home` (default: $RAYDOG_HOME), on `emulator` and in `tag_stores`,
    besides what `besides` counted already, after waiting up to `wait_s` for it to reach zero."""
    home = Path(home or raydog_home())
    backend = LocalBackend(home / "local")
    stores = list(tag_stores)
    deadline = time.monotonic() + wait_s
    while True:
        leaks = LeakCount(
            processes=backend.live_resources(),
            emulator=emulator.live_resources() if emulator is not None else [],
            redis_keys=[key for store in stores for key in tag_store_keys(store)],
            commands=[
                f"command pid {ref.pid} of cluster {cluster}" for cluster, ref in commands.live(home=home)
            ],
            files=leftover_files(home, emulator.live_cluster_ids() if emulator is not None else None),
        ).without(besides)
        if leaks.total == 0 or time.monotonic() >= deadline:
            return leaks
        time.sleep(POLL_S)


def tag_store_keys(store: TagStore) -> list[str]:
    """Keys of the store's cluster; none if the store is gone (it lived on the cluster's head)."""
    if not is_listening(store.host, store.port):
        return []
    return store.keys()
