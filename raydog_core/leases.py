"""Leases: a cluster lives while someone uses it, kept by its clients and enforced on its head.

A client that uses a cluster holds a lease on it and renews it in the background (`LeaseKeeper`). The
leases live with the cluster, in the watchdog on its head (`raydog_core.watchdog`), reached over HTTP
on the head's loopback: directly where this client shares the head's host or network, through the SSH
tunnel to the head otherwise. When every lease has lapsed (its holder died, even by SIGKILL) and the
cluster has been idle for its idle TTL, the watchdog ends the cluster from the inside; nothing of ours
has to survive for that, and no platform credential is needed on any node.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import timedelta
from importlib import resources
from typing import Any

from raydog_core.backends.base import BackendCapabilities
from raydog_core.errors import RayDogError, SpecError
from raydog_core.spec import ClusterFields
from raydog_core.state import LeaseState

log = logging.getLogger("raydog")

REQUEST_TIMEOUT_S = 10.0
RENEWALS_PER_TIMEOUT = 4  # renew four times per lease timeout: three renewals may fail before it lapses
DEFAULT_TTL_S = 120.0  # a lease on a cluster that does not need leases (it ends on idleness alone)
FIRST_TAKE_S = 30.0  # how long a ready head's watchdog may take to answer the first time
TAKE_RETRY_S = 0.5  # until the first lease is taken
HEAD_LOST_AFTER_S = 10  # a worker of a self-ending cluster leaves once its head has not answered this long
WORKER_RECONNECT_S = 30  # and Ray's own backstop for custom worker scripts (Ray's default: 60)
# A worker told to stop asks the GCS to drain it first; with its head gone that can only time out, and
# a raylet that outlives its GCS's reconnect timeout dies "unexpectedly", leaving Ray's agents behind
# for a minute more. Well below WORKER_RECONNECT_S - HEAD_LOST_AFTER_S: the stop stays graceful.
WORKER_DRAIN_S = 5
WARM_IDLE_TTL = timedelta(minutes=10)  # how long a warm cluster (reuse_key) waits for the next run


class LeaseError(RayDogError):
    """The lease endpoint refused a request or could not be reached."""


def choose_leased(
    asked: bool | None,
    in_with_block: bool,
    capabilities: BackendCapabilities,
    spec: ClusterFields,
    *,
    held_elsewhere: bool = False,
) -> bool:
    """Whether a build makes a leased cluster: as asked, else inside a with-block where the head is
    reachable.

    A client that cannot reach the head (YellowDog nodes on machines of their own, no tunnel) cannot
    renew a lease: asking for one is an error before anything is created, unless the lease is
    `held_elsewhere` (through a tunnel the caller opens after the build, within `build_timeout`); the
    with-block default falls back to an unleased cluster, with a warning, bounded by its lifetime.
    """
    if asked is False:
        return False
    if capabilities.nodes_reachable or (asked and held_elsewhere):
        return asked is True or in_with_block
    if asked:
        raise SpecError(
            "lease",
            f"this client cannot reach the head of {spec.backend} cluster {spec.cluster_name} to renew a lease",
            "use a door that tunnels to the head (the Prefect runner, the Airflow hook), node_placement="
            "'shared_host' where nodes run on this host, or build(lease=False) and shut it down yourself",
        )
    if in_with_block:
        log.warning(
            "cluster %s is not leased: this client cannot reach its head; it lives until shut down or "
            "until its cluster_lifetime",
            spec.cluster_name,
        )
    return False


def terms_for(spec: ClusterFields, leased: bool) -> LeaseState | None:
    """The cluster's keep-alive terms: leases needed (leased), idleness alone (an idle TTL), or none.

    A warm cluster (one with a reuse_key) waits `WARM_IDLE_TTL` for the next run unless told otherwise.
    """
    idle_ttl = spec.idle_ttl
    if idle_ttl is None and spec.reuse_key is not None:
        idle_ttl = WARM_IDLE_TTL
    idle_ttl_s = idle_ttl.total_seconds() if idle_ttl is not None else 0.0
    warm_workers = spec.warm_workers if spec.reuse_key is not None else 0
    if leased:
        return LeaseState(
            timeout_s=spec.lease_timeout.total_seconds(),
            idle_ttl_s=idle_ttl_s,
            first_lease_within_s=max(spec.build_timeout, spec.lease_timeout).total_seconds(),
            warm_workers=warm_workers,
        )
    if spec.idle_ttl is not None:
        return LeaseState(
            timeout_s=None,
            idle_ttl_s=idle_ttl_s,
            first_lease_within_s=spec.build_timeout.total_seconds(),
            warm_workers=warm_workers,
        )
    return None


def without_watchdog(terms: LeaseState | None, head_script: str, cluster_name: str) -> LeaseState | None:
    """The terms, or None where the head's script does not start the watchdog (a custom script written
    before leases): such a cluster cannot end itself, and says so, instead of failing its build."""
    if terms is None or "RAYDOG_WATCHDOG_PROGRAM" in head_script:
        return terms
    log.warning(
        "cluster %s is not leased and has no idle TTL: its head script does not start the watchdog "
        '(python3 -c "$RAYDOG_WATCHDOG_PROGRAM", see docs/leases.md); it lives until shut down or until '
        "its cluster_lifetime",
        cluster_name,
    )
    return None


def watchdog_environment(terms: LeaseState, lease_port: int, dashboard_port: int) -> dict[str, str]:
    """What the head's script needs to start the watchdog (`python3 -c "$RAYDOG_WATCHDOG_PROGRAM"`)."""
    env = {
        "RAYDOG_WATCHDOG_PROGRAM": resources.files("raydog_core").joinpath("watchdog.py").read_text(),
        "RAYDOG_LEASE_PORT": str(lease_port),
        "RAYDOG_IDLE_TTL_S": f"{terms.idle_ttl_s:g}",
        "RAYDOG_DASHBOARD_PORT": str(dashboard_port),
    }
    if terms.timeout_s is not None:
        env["RAYDOG_LEASE_TIMEOUT_S"] = f"{terms.timeout_s:g}"
    if terms.first_lease_within_s is not None:
        env["RAYDOG_FIRST_LEASE_GRACE_S"] = f"{terms.first_lease_within_s:g}"
    if terms.warm_workers:
        env["RAYDOG_WARM_WORKERS"] = str(terms.warm_workers)
        env["RAYDOG_PRESTART_PROGRAM"] = resources.files("raydog_core").joinpath("prestart.py").read_text()
    return env


def worker_environment() -> dict[str, str]:
    """A worker of a self-ending cluster leaves soon after its head is gone, so its task (and on
    YellowDog its instance) ends with the cluster."""
    return {
        "RAYDOG_HEAD_LOST_AFTER_S": str(HEAD_LOST_AFTER_S),
        "RAY_gcs_rpc_server_reconnect_timeout_s": str(WORKER_RECONNECT_S),
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": str(WORKER_DRAIN_S),
    }


def holder_name(kind: str) -> str:
    """A lease holder's name that says who holds it: kind, host, process and a random part."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())[:60]
    return f"{kind}:{host}:{os.getpid()}:{secrets.token_hex(3)}"


class LeaseClient:
    """The lease endpoint of one cluster, at an address the backend vouches for (the token goes there)."""

    def __init__(self, base_url: str, token: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token

    def __repr__(self) -> str:
        return f"LeaseClient({self.base_url!r})"

    def renew(self, holder: str, ttl_s: float) -> float:
        """Take or renew `holder`'s lease for `ttl_s` seconds; returns the seconds granted."""
        reply = self._request("PUT", f"/v1/leases/{holder}", {"ttl_s": ttl_s})
        return float(reply["expires_in_s"])

    def release(self, holder: str) -> bool:
        return bool(self._request("DELETE", f"/v1/leases/{holder}")["released"])

    def view(self, timeout_s: float = REQUEST_TIMEOUT_S) -> dict[str, Any]:
        """Leases (holder, seconds left), idle seconds and seconds until the cluster ends."""
        return self._request("GET", "/v1/leases", timeout_s=timeout_s)

    def _request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"{self.base_url}{path}", data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self._token:
            request.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read(500).decode(errors="replace")
            raise LeaseError(f"lease endpoint {self.base_url} answered {error.code}: {detail}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
            raise LeaseError(f"lease endpoint {self.base_url} is not reachable: {error}") from None


class LeaseKeeper:
    """Holds one lease while it runs: renewed in a daemon thread from `start()`, released at `stop()`.

    The thread first tries every half second until the lease is taken (a head still booting has no
    watchdog yet), then renews `RENEWALS_PER_TIMEOUT` times per lease timeout; a renewal that fails is
    logged and retried at the next turn, so the lease lapses only after several failures in a row.
    `client` is called for each request until one succeeds, then its client is kept: it may look the
    head up (it has no address before it runs).
    """

    def __init__(self, client: Callable[[], LeaseClient], holder: str, terms: LeaseState) -> None:
        self.holder = holder
        self._find_client = client
        self._client: LeaseClient | None = None
        self._ttl_s = terms.timeout_s or DEFAULT_TTL_S
        self._stop = threading.Event()
        self._taken = threading.Event()
        self._last_error: Exception | None = None
        self._thread: threading.Thread | None = None
        self.failures = 0

    def __enter__(self) -> LeaseKeeper:
        return self.take()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._keep, name="raydog-lease", daemon=True)
        self._thread.start()

    def take(self) -> LeaseKeeper:
        """Start renewing and wait until the lease is held; on failure nothing keeps running."""
        self.start()
        try:
            self.wait_taken()
        except BaseException:
            self.stop(release=False)
            raise
        return self

    def wait_taken(self, timeout_s: float = FIRST_TAKE_S) -> None:
        """Until the lease is held; a client that cannot hold one must not go on as if it did."""
        if not self._taken.wait(timeout_s):
            raise LeaseError(
                f"could not take a lease within {timeout_s:g} s: {self._last_error or 'no answer'} (a custom "
                "head script must start the watchdog: see docs/leases.md)"
            )

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with `release`, tell the cluster now rather than letting the lease lapse."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=REQUEST_TIMEOUT_S + 1)
            self._thread = None
        if release and self._client is not None and self._taken.is_set():
            try:
                self._client.release(self.holder)
            except LeaseError as error:
                log.debug("lease %s not released (it lapses by itself): %s", self.holder, error)

    def _keep(self) -> None:
        interval = TAKE_RETRY_S
        while not self._stop.is_set():
            try:
                client = self._client or self._find_client()
                client.renew(self.holder, self._ttl_s)
            except (LeaseError, RayDogError) as error:
                self._last_error = error
                if self._taken.is_set():
                    self.failures += 1
                    log.warning(
                        "renewing lease %s failed (%d in a row): %s", self.holder, self.failures, error
                    )
            else:
                self._client = client
                self._taken.set()
                self.failures = 0
                interval = self._ttl_s / RENEWALS_PER_TIMEOUT
            self._stop.wait(interval)
