"""A YellowDog platform emulator: the real `yellowdog-sdk` talks to it over HTTP on loopback, and its
"instances" run their tasks as local process sessions.

```python
from raydog_core.testing.emulator import Emulator
with Emulator(templates=["demo/small"]) as emulator:
    client = emulator.platform_client()          # or RayDogCluster(yd_platform_api_url=emulator.url, ...)
    backend = YellowDogBackend(emulator.credentials(), placement=emulator.placement)
    ...
    assert emulator.live_resources() == []       # the leak check
```

Its instances are processes on this host, so whoever builds a YellowDog backend for it says so with
`placement=NodePlacement.SHARED_HOST` (spec `node_placement`, provider `node_placement`, or
`RAYDOG_YELLOWDOG_NODE_PLACEMENT=shared_host`); the backend itself never asks whether this is an emulator.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from raydog_core.spec import NodePlacement
from raydog_core.testing.emulator import routes, wire
from raydog_core.testing.emulator.agent import Agent
from raydog_core.testing.emulator.entities import Instance
from raydog_core.testing.emulator.faults import Faults
from raydog_core.testing.emulator.platform import Platform
from raydog_core.testing.emulator.server import HOST, PlatformServer

__all__ = ["DEFAULT_TEMPLATES", "Emulator", "Faults"]

log = logging.getLogger("raydog.emulator")

DEFAULT_KEY_ID = "emulator-key"
DEFAULT_KEY_SECRET = "emulator-secret"  # a test credential of the local emulator only
DEFAULT_TEMPLATES = ("raydog/emulated",)
TICK_S = 0.05


class Emulator:
    """Start with `start()` or a with-block; `url`, `key_id` and `key_secret` are what clients need, and
    `placement` what their backends need (every instance is a process on this host)."""

    placement = NodePlacement.SHARED_HOST

    def __init__(
        self,
        *,
        key_id: str = DEFAULT_KEY_ID,
        key_secret: str = DEFAULT_KEY_SECRET,
        templates: Iterable[str] = DEFAULT_TEMPLATES,
        strict_templates: bool = True,
        faults: Faults | None = None,
        root: str | Path | None = None,
        port: int = 0,
        page_size: int = routes.PAGE_SIZE,
        task_commands: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.key_id = key_id
        self._key_secret = key_secret
        self.faults = faults or Faults()
        self._own_root = root is None
        # Short root: Ray's Unix socket paths below an instance's temp dir must stay under ~107 characters.
        self.root = Path(root) if root else Path(tempfile.mkdtemp(prefix="yde-", dir="/tmp"))
        self.platform = Platform(Agent(self.root, task_commands), self.faults, templates)
        self.platform.strict_templates = strict_templates
        routes.PAGE_SIZE = page_size
        self._server = PlatformServer(self.platform, self.faults, key_id, key_secret, port)
        self.platform.on_change = self._server.hub.publish_changes
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"Emulator(url={self.url!r})"

    @property
    def key_secret(self) -> str:
        return self._key_secret

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self._server.server_port}"

    @property
    def task_output_url(self) -> str:
        """The emulator's store for tasks' uploaded outputs (`Task.data.outputs`): a folder of its own.
        Point a backend at it with `RAYDOG_YELLOWDOG_TASK_OUTPUT_URL` (in `environment()`)."""
        return (self.root / "task-outputs").as_uri()

    @property
    def calls(self) -> int:
        """API requests answered so far (for benchmarks)."""
        return sum(self._server.calls.values())

    @property
    def call_counts(self) -> dict[str, int]:
        return dict(self._server.calls)

    def set_heartbeat(self, seconds: float) -> None:
        self._server.heartbeat_s = seconds

    def start(self) -> Emulator:
        serve = threading.Thread(target=self._server.serve_forever, name="yd-emulator-http", daemon=True)
        ticker = threading.Thread(target=self._tick_forever, name="yd-emulator-ticker", daemon=True)
        self._threads = [serve, ticker]
        for thread in self._threads:
            thread.start()
        log.info("YellowDog emulator listening on %s", self.url)
        return self

    def stop(self) -> list[str]:
        """Stop serving, terminate everything still alive; returns processes that would not stop."""
        self._stopping.set()
        self._server.hub.close_all()
        self._server.shutdown()
        self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=10)
        failures = self.platform.stop_everything()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        return failures

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- for tests ----------------------------------------------------------------------------------

    def live_resources(self) -> list[str]:
        """Every live work requirement, pool, compute requirement, instance and task process."""
        return self.platform.live_resources()

    def live_cluster_ids(self) -> list[str]:
        """Ids of the work requirements still live: a YellowDog cluster's id is its work requirement's."""
        with self.platform.lock:
            return [r.id for r in self.platform.requirements.values() if not r.finished]

    def wait_until_clean(self, timeout_s: float = 15.0) -> list[str]:
        """The leak check with a bounded wait for terminations in progress; returns what is left."""
        from raydog_core.processes import wait_until

        wait_until(lambda: not self.live_resources(), timeout_s, 0.2)
        return self.live_resources()

    def instances(self) -> list[Instance]:
        with self.platform.lock:
            return list(self.platform.instances.values())

    def kill_instance_of_task(self, task_id_or_name: str) -> Instance:
        """Fault injection: the machine running this task (id or name) dies."""
        with self.platform.lock:
            task = next((t for t in self.platform.tasks.values() if task_id_or_name in (t.id, t.name)), None)
            instance = task.instance if task else None
        if instance is None:
            raise LookupError(f"no running instance for task {task_id_or_name!r}")
        self.platform.kill_instance(instance)
        return instance

    def retries_of_task(self, task_id_or_name: str) -> int:
        """How many times the platform started this task again (its group's retry policy)."""
        with self.platform.lock:
            task = next(t for t in self.platform.tasks.values() if task_id_or_name in (t.id, t.name))
            return task.retry_count

    def pass_time(self, hours: float) -> None:
        """Fault injection for money: account as if `hours` had passed. The records of live instances
        and the start of every allowance move that far into the past, so instance-hours, usage and
        allowances count them (nothing else changes: no timeout or idle shutdown fires)."""
        shift = timedelta(hours=hours)
        with self.platform.lock:
            for instance in self.platform.instances.values():
                if instance.alive:
                    instance.created -= shift
                    instance.history = [(since - shift, status) for since, status in instance.history]
            for allowance in self.platform.allowances.values():
                start = wire.parse_time(allowance.spec["effectiveFrom"]) - shift
                allowance.spec["effectiveFrom"] = wire.timestamp(start)

    def task_output(self, task_id_or_name: str) -> str:
        with self.platform.lock:
            task = next((t for t in self.platform.tasks.values() if task_id_or_name in (t.id, t.name)), None)
        if task is None or task.sandbox is None:
            return ""
        try:
            return (Path(task.sandbox) / "taskoutput.txt").read_text(errors="replace")
        except OSError:
            return ""

    def credentials(self) -> Any:
        """YellowDogCredentials for this emulator (what RayDogCluster/RayDogClusterProxy resolve)."""
        from raydog_core.credentials import YellowDogCredentials

        return YellowDogCredentials.resolve(self.key_id, self._key_secret, self.url)

    def environment(self) -> dict[str, str]:
        """The variables that point integrations (Blocks, hooks, `ray up`) at this emulator."""
        from raydog_core.backends.yellowdog import task_outputs
        from raydog_core.backends.yellowdog.placement import PLACEMENT_ENV

        return {
            "YD_API_KEY_ID": self.key_id,
            "YD_API_KEY_SECRET": self._key_secret,
            "YD_API_URL": self.url,
            PLACEMENT_ENV: self.placement.value,
            task_outputs.URL_ENV: self.task_output_url,
        }

    def cluster_kwargs(self) -> dict[str, str]:
        """The upstream keyword arguments that point a RayDogCluster or proxy at this emulator."""
        return {
            "yd_application_key_id": self.key_id,
            "yd_application_key_secret": self._key_secret,
            "yd_platform_api_url": self.url,
        }

    def platform_client(self, retry_attempts: int = 3) -> Any:
        """A real yellowdog-sdk PlatformClient pointed at this emulator."""
        from yellowdog_client.model import ApiKey, RetryProperties, ServicesSchema
        from yellowdog_client.platform_client import PlatformClient

        retry = RetryProperties(
            maxAttempts=retry_attempts,
            initialInterval=timedelta(milliseconds=20),
            maxInterval=timedelta(seconds=1),
        )
        return PlatformClient.create(
            ServicesSchema(defaultUrl=self.url, retry=retry), ApiKey(self.key_id, self._key_secret)
        )

    def _tick_forever(self) -> None:
        while not self._stopping.wait(TICK_S):
            try:
                self.platform.tick()
            except Exception:  # the ticker must survive a bug in one step, and say so
                log.exception("emulator tick failed")
