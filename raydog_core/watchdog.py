"""The watchdog on a cluster's head: it ends the cluster from the inside once nobody uses it.

Clients hold *leases* on the cluster and renew them while they live (`raydog_core.leases`). When no
lease has been renewed in time, no Ray driver is attached and no job runs, and the cluster has been
idle like that for its idle time-to-live, the watchdog exits with status 0, and the head script that started it ends
the head: workers lose their head and stop, and on YellowDog their tasks end and the pools' idle
shutdown releases the instances. It needs no platform credential, only what the head already has.

This module is a standalone program: standard library only, no RayDog import, because it runs on head
nodes where RayDog may not be installed. The default head script starts it from the environment:

    python3 -c "$RAYDOG_WATCHDOG_PROGRAM" &

and a custom head script can do the same (see docs/leases.md). Configuration, all from the environment:

| variable | meaning |
| --- | --- |
| `RAYDOG_LEASE_PORT` | port of the lease endpoint (HTTP) |
| `RAYDOG_LEASE_HOST` | address it binds: 127.0.0.1 by default (clients come through a tunnel or the host) |
| `RAYDOG_LEASE_TIMEOUT_S` | when set, the cluster needs leases: this long after start-up or after the last lease lapsed, with no Ray activity for the idle TTL, it ends |
| `RAYDOG_IDLE_TTL_S` | how long the cluster stays up idle once no lease holds it (0 when unset) |
| `RAYDOG_FIRST_LEASE_GRACE_S` | how long the first lease may take to come (default: the lease timeout): the build's timeout, so a client still waiting for its workers, or one that takes its lease through a tunnel opened after the build, is not too late; also how long a head whose Ray has not answered yet counts as starting rather than idle |
| `RAYDOG_DASHBOARD_PORT` | the head's Ray dashboard, asked whether drivers are active |
| `RAY_AUTH_TOKEN` | the cluster's Ray token: lease requests must carry it as a bearer token |
| `RAYDOG_WARM_WORKERS`, `RAYDOG_PRESTART_PROGRAM` | a warm cluster: as each holder releases its lease, start the program (raydog_core/prestart.py) with this Python, which starts that many Ray workers for the next run |

The endpoint: `PUT /v1/leases/<holder>` with `{"ttl_s": 120}` takes or renews a lease,
`DELETE /v1/leases/<holder>` releases it, `GET /v1/leases` shows leases, idle time and when the cluster
would end. Every request needs `Authorization: Bearer <token>` when the cluster has a token.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOLDER = re.compile(r"[A-Za-z0-9._:@+-]{1,200}")
MAX_LEASES = 1000
MAX_TTL_S = 7 * 24 * 3600.0
MAX_BODY = 4096
TICK_S = 1.0
ACTIVITY_EVERY_S = 5.0


class ClusterEnding(Exception):
    """A lease asked for after the watchdog decided to end the cluster."""


class Leases:
    """Who holds the cluster until when, and when it was last busy: the watchdog's whole state.

    Times are `time.monotonic()` values. The cluster is held while any lease runs; once none does, it
    ends when it has been idle (no lease, no Ray activity) for `idle_ttl_s`. Before anyone took a
    lease, the start-up counts as a lease of `grace_s`.
    """

    def __init__(self, grace_s: float, idle_ttl_s: float, now: float, startup_s: float = 0.0) -> None:
        self.idle_ttl_s = idle_ttl_s
        self._starting_until = now + startup_s  # Ray not seen yet: still starting, not idle, until then
        self._ray_seen = False
        self._expiry: dict[str, float] = {}
        self._held_until = now + grace_s  # the latest moment any lease (or the start-up grace) held it
        self._taken = False  # the first lease ends the start-up grace: from then on, leases alone count
        self._busy_at: float | None = None  # when Ray activity was last seen
        self._busy = False  # whether the last look saw Ray activity
        self._ending = False  # decided: no lease is granted any more (a warm run must not attach now)
        self._departures = 0  # holders that released their lease since the last `take_departures`
        self._lock = threading.Lock()

    def renew(self, holder: str, ttl_s: float, now: float) -> float:
        with self._lock:
            if self._ending:
                raise ClusterEnding("the cluster is ending: no more leases")
            if holder not in self._expiry and len(self._expiry) >= MAX_LEASES:
                self._forget_lapsed(now)
                if len(self._expiry) >= MAX_LEASES:
                    raise OverflowError(f"more than {MAX_LEASES} leases")
            self._expiry[holder] = now + ttl_s
            self._held_until = now + ttl_s if not self._taken else max(self._held_until, now + ttl_s)
            self._taken = True
            return ttl_s

    def take_departures(self) -> int:
        """How many holders released their lease since the last call."""
        with self._lock:
            departures, self._departures = self._departures, 0
            return departures

    def release(self, holder: str, now: float) -> bool:
        with self._lock:
            expiry = self._expiry.pop(holder, None)
            if expiry is None:
                return False
            self._departures += 1
            if not self._live(now):  # the last holder left: idle from now, not from its expiry
                self._held_until = now
            return True

    def activity(self, active: bool | None, now: float) -> None:
        """What the last look at Ray saw: active drivers hold the cluster like a lease does; an unknown
        answer (the dashboard not up, or off) counts as idle, so a cluster cannot hang on it."""
        with self._lock:
            self._ray_seen = self._ray_seen or active is not None
            if active is None and not (self._ray_seen or self._taken) and now < self._starting_until:
                active = True  # a head whose Ray is still starting (and nobody has used yet) is not idle
            if active or self._busy:  # busy until this look, at least
                self._busy_at = now
            self._busy = bool(active)

    def ends_in(self, now: float) -> float:
        """Seconds until the cluster should end (0 or less: now); it never ends while a lease runs."""
        with self._lock:
            return self._ends_in(now)

    def end_if_due(self, now: float) -> bool:
        """Decide, in one step with any renewal, that the cluster ends now: from then on no lease is
        granted, so a client never holds a lease on a cluster that is going away."""
        with self._lock:
            self._ending = self._ending or self._ends_in(now) <= 0
            return self._ending

    def _ends_in(self, now: float) -> float:
        if self._live(now) or self._busy:
            return max(self._held_until - now, 0.0) + self.idle_ttl_s
        idle_from = self._held_until if self._busy_at is None else max(self._held_until, self._busy_at)
        return idle_from + self.idle_ttl_s - now

    def view(self, now: float) -> dict[str, Any]:
        with self._lock:
            self._forget_lapsed(now)
            leases = [
                {"holder": h, "expires_in_s": round(e - now, 1)} for h, e in sorted(self._expiry.items())
            ]
            idle_from = max(self._held_until, self._busy_at or 0.0)
            busy = self._busy
        return {
            "leases": leases,
            "ray_active": busy,
            "idle_s": round(max(now - idle_from, 0.0), 1) if not (leases or busy) else 0.0,
            "idle_ttl_s": self.idle_ttl_s,
            "ends_in_s": round(self.ends_in(now), 1),
            "ending": self._ending,
        }

    def _live(self, now: float) -> bool:
        return any(expiry > now for expiry in self._expiry.values())

    def _forget_lapsed(self, now: float) -> None:
        for holder in [h for h, e in self._expiry.items() if e <= now]:
            del self._expiry[holder]


def drivers_active(dashboard_port: int, token: str | None) -> bool | None:
    """Whether Ray has an active driver (a job, a Ray Client session), per the head's dashboard; None
    when the dashboard does not answer (not up yet, or turned off)."""
    request = urllib.request.Request(f"http://127.0.0.1:{dashboard_port}/api/component_activities")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            payload = json.loads(response.read())
        return payload["driver"]["is_active"] == "ACTIVE"
    except Exception:  # noqa: BLE001 - any failure means "unknown", never a crash of the watchdog
        return None


class ReadyWorkers:
    """Starts Ray workers for a warm cluster's next run, one request at a time, as runs leave: the
    program (raydog_core/prestart.py, handed over in the environment) runs with this Python, which on a
    head is Ray's, so the watchdog itself imports nothing of Ray's."""

    def __init__(self, program: str) -> None:
        self._program = program
        self._running: subprocess.Popen[bytes] | None = None

    def start(self) -> bool:
        """Start the program unless it still runs (the workers it is starting serve this departure too)."""
        if self._running is not None and self._running.poll() is None:
            return False
        self._running = subprocess.Popen([sys.executable, "-c", self._program], stdin=subprocess.DEVNULL)
        return True

    def stop(self) -> None:
        if self._running is not None and self._running.poll() is None:
            self._running.kill()
            self._running.wait()


def make_handler(leases: Leases, token: str | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self._authorized():
                if self.path.rstrip("/") == "/v1/leases":
                    self._reply(200, leases.view(time.monotonic()))
                else:
                    self._reply(404, {"error": "not found"})

        def do_PUT(self) -> None:
            holder = self._holder()
            if holder is None:
                return
            try:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    raise ValueError("body too long")
                body = json.loads(self.rfile.read(length) or b"{}")
                ttl_s = float(body["ttl_s"])
                if not 0 < ttl_s <= MAX_TTL_S:
                    raise ValueError("ttl_s out of range")
            except (ValueError, KeyError, TypeError):
                self._reply(400, {"error": f'body must be {{"ttl_s": <seconds, 0 < s <= {MAX_TTL_S:g}>}}'})
                return
            try:
                granted = leases.renew(holder, ttl_s, time.monotonic())
            except OverflowError as error:
                self._reply(429, {"error": str(error)})
                return
            except ClusterEnding as error:
                self._reply(410, {"error": str(error)})
                return
            self._reply(200, {"holder": holder, "expires_in_s": granted})

        def do_DELETE(self) -> None:
            holder = self._holder()
            if holder is not None:
                released = leases.release(holder, time.monotonic())
                self._reply(200, {"holder": holder, "released": released})

        def _holder(self) -> str | None:
            if not self._authorized():
                return None
            prefix = "/v1/leases/"
            holder = self.path[len(prefix) :] if self.path.startswith(prefix) else ""
            if not HOLDER.fullmatch(holder):
                self._reply(400, {"error": f"the lease holder must match {HOLDER.pattern}"})
                return None
            return holder

        def _authorized(self) -> bool:
            if not token:
                return True
            given = self.headers.get("Authorization", "")
            if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return True
            self._reply(401, {"error": "a bearer token is required"})
            return False

        def _reply(self, status: int, payload: dict[str, Any]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # renewals every few seconds would flood the node's log

    return Handler


def _seconds(name: str, default: float | None = None) -> float | None:
    raw = os.environ.get(name, "")
    if not raw:
        return default
    value = float(raw)
    if not value >= 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, not {raw!r}")
    return value


def main() -> int:
    """Serve leases until the cluster should end; then return 0 (the head script ends the head)."""
    lease_timeout = _seconds("RAYDOG_LEASE_TIMEOUT_S")
    idle_ttl = _seconds("RAYDOG_IDLE_TTL_S", 0.0) or 0.0
    token = os.environ.get("RAY_AUTH_TOKEN") or None
    dashboard_port = int(os.environ.get("RAYDOG_DASHBOARD_PORT") or 0)
    grace = _seconds("RAYDOG_FIRST_LEASE_GRACE_S", lease_timeout or 0.0) or 0.0
    leases = Leases(
        grace_s=grace if lease_timeout is not None else 0.0,
        idle_ttl_s=idle_ttl,
        now=time.monotonic(),
        startup_s=grace,
    )
    server = ThreadingHTTPServer(
        (os.environ.get("RAYDOG_LEASE_HOST", "127.0.0.1"), int(os.environ["RAYDOG_LEASE_PORT"])),
        make_handler(leases, token),
    )
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="leases", daemon=True).start()
    needed = f"required, timeout {lease_timeout:g}s" if lease_timeout is not None else "optional"
    print(
        f"raydog: watchdog on port {server.server_address[1]}: leases {needed}, idle ttl {idle_ttl:g}s",
        flush=True,
    )
    prestart_program = os.environ.get("RAYDOG_PRESTART_PROGRAM")  # set for a warm cluster only
    ready_workers = ReadyWorkers(prestart_program) if prestart_program else None
    last_activity_check = 0.0
    while True:
        now = time.monotonic()
        if leases.take_departures() and ready_workers is not None:
            ready_workers.start()
        if dashboard_port and now - last_activity_check >= ACTIVITY_EVERY_S:
            last_activity_check = now
            leases.activity(drivers_active(dashboard_port, token), now)
        if leases.end_if_due(now):
            view = leases.view(now)
            print(
                f"raydog: watchdog: no lease held and idle for {view['idle_s']:g}s "
                f"(idle ttl {idle_ttl:g}s): ending the cluster",
                flush=True,
            )
            server.shutdown()
            if ready_workers is not None:
                ready_workers.stop()
            return 0
        time.sleep(TICK_S)


if __name__ == "__main__":
    sys.exit(main())
