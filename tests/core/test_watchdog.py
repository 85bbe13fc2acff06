"""The head's watchdog: its rules (`Leases`, with time given explicitly) and the real program, run as
the head script runs it (`python3 -c "$RAYDOG_WATCHDOG_PROGRAM"`), with the lease client against it.

No Ray here: the program asks the dashboard for Ray activity and treats "no answer" as idle, which is
what these cases need; the cases with real Ray clusters are in tests/faults/test_leases.py.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psutil
import pytest

from raydog_core import leases
from raydog_core.backends.base import ClusterOptions, NodeLaunch, NodeRole
from raydog_core.errors import RayDogError
from raydog_core.leases import LeaseClient, LeaseError, LeaseKeeper
from raydog_core.ports import free_ports
from raydog_core.processes import wait_until
from raydog_core.scripts import default_script
from raydog_core.state import LeaseState
from raydog_core.watchdog import ClusterEnding, Leases

# -- the rules ----------------------------------------------------------------------------------------


def test_start_up_grace_counts_as_a_lease() -> None:
    rules = Leases(grace_s=10, idle_ttl_s=0, now=0)
    assert rules.ends_in(now=5) == pytest.approx(5)
    assert rules.ends_in(now=10) <= 0


def test_a_lease_holds_the_cluster_until_it_lapses_then_the_idle_ttl_runs() -> None:
    rules = Leases(grace_s=10, idle_ttl_s=30, now=0)
    rules.renew("a", ttl_s=60, now=5)
    assert rules.ends_in(now=64) == pytest.approx(1 + 30)
    assert rules.ends_in(now=70) == pytest.approx(25)  # lapsed at 65: idle since then
    assert rules.ends_in(now=95) <= 0


def test_a_release_starts_the_idle_time_at_once() -> None:
    rules = Leases(grace_s=0, idle_ttl_s=20, now=0)
    rules.renew("a", ttl_s=600, now=1)
    rules.renew("b", ttl_s=600, now=1)
    assert rules.release("a", now=10)
    assert rules.ends_in(now=10) > 500, "another lease still holds it"
    assert rules.release("b", now=10)
    assert not rules.release("b", now=10), "released twice"
    assert rules.ends_in(now=10) == pytest.approx(20)
    assert rules.ends_in(now=30) <= 0


def test_ray_activity_holds_the_cluster_and_restarts_the_idle_time() -> None:
    rules = Leases(grace_s=0, idle_ttl_s=10, now=0)
    rules.activity(True, now=5)
    assert rules.ends_in(now=100) > 0, "an attached driver keeps an idle-TTL cluster up"
    rules.activity(False, now=100)  # busy until this look: idle from now
    assert rules.ends_in(now=100) == pytest.approx(10)
    rules.activity(None, now=101)  # the dashboard did not answer: counted as idle, never as a hang
    assert rules.ends_in(now=110) <= 0


def test_once_the_end_is_decided_no_lease_is_granted() -> None:
    rules = Leases(grace_s=0, idle_ttl_s=10, now=0)
    rules.renew("run-1", 5, now=0)
    assert not rules.end_if_due(now=14)  # idle since 5 s: 9 s of 10
    assert rules.end_if_due(now=15)
    with pytest.raises(ClusterEnding):
        rules.renew("run-2", 5, now=15)  # a warm run arriving now must build anew, not attach
    assert rules.view(now=15)["ending"] is True


def test_the_view_lists_live_leases_only() -> None:
    rules = Leases(grace_s=0, idle_ttl_s=0, now=0)
    rules.renew("short", ttl_s=1, now=0)
    rules.renew("long", ttl_s=100, now=0)
    view = rules.view(now=50)
    assert [lease["holder"] for lease in view["leases"]] == ["long"]
    assert view["ends_in_s"] == pytest.approx(50)


# -- the program ---------------------------------------------------------------------------------------


class Watchdog:
    """The watchdog program as a head script starts it, and a lease client pointed at it."""

    def __init__(
        self,
        lease_timeout_s: float | None,
        idle_ttl_s: float,
        token: str | None,
        prestart_stand_in: str | None = None,
    ) -> None:
        (port,) = free_ports(1)
        warm_workers = 0 if prestart_stand_in is None else 1
        terms = LeaseState(timeout_s=lease_timeout_s, idle_ttl_s=idle_ttl_s, warm_workers=warm_workers)
        (dead_dashboard,) = free_ports(1)  # nothing listens: Ray activity is unknown, so idle
        env = leases.watchdog_environment(terms, port, dead_dashboard)
        if prestart_stand_in is not None:  # Ray is not under test here: when the watchdog starts it is
            env["RAYDOG_PRESTART_PROGRAM"] = prestart_stand_in
        if token:
            env["RAY_AUTH_TOKEN"] = token
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-c", env["RAYDOG_WATCHDOG_PROGRAM"]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.url = f"http://127.0.0.1:{port}"
        self.client = LeaseClient(self.url, token)
        assert wait_until(self._answers, 10, 0.1), "the watchdog never listened"

    def _answers(self) -> bool:
        try:
            self.client.view()
            return True
        except LeaseError:
            return False

    def ended_within(self, seconds: float) -> bool:
        try:
            self.output = self.process.communicate(timeout=seconds)[0]
        except subprocess.TimeoutExpired:
            return False
        return self.process.returncode == 0

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()


@pytest.fixture
def token() -> str:
    return secrets.token_urlsafe(16)


@pytest.fixture
def watchdog_factory(token: str) -> Iterator:
    started: list[Watchdog] = []

    def make(
        lease_timeout_s: float | None = 2.0, idle_ttl_s: float = 0.0, prestart_stand_in: str | None = None
    ) -> Watchdog:
        watchdog = Watchdog(lease_timeout_s, idle_ttl_s, token, prestart_stand_in)
        started.append(watchdog)
        return watchdog

    yield make
    for watchdog in started:
        watchdog.stop()


def test_nobody_takes_a_lease_and_the_cluster_ends_after_the_grace(watchdog_factory) -> None:
    watchdog = watchdog_factory(lease_timeout_s=2.0)
    assert watchdog.ended_within(15), "the watchdog did not end an unleased cluster"
    assert "ending the cluster" in watchdog.output


def test_a_kept_lease_holds_the_cluster_and_its_lapse_ends_it(watchdog_factory) -> None:
    watchdog = watchdog_factory(lease_timeout_s=2.0)
    keeper = LeaseKeeper(lambda: watchdog.client, "flow-run:abc", LeaseState(timeout_s=2.0))
    keeper.start()
    keeper.wait_taken()
    assert not watchdog.ended_within(5), "the cluster ended although its lease was renewed"
    view = watchdog.client.view()
    assert [lease["holder"] for lease in view["leases"]] == ["flow-run:abc"]
    keeper.stop(release=False)  # the holder dies: nobody releases, the lease lapses
    assert watchdog.ended_within(15)


def test_releasing_the_last_lease_ends_the_cluster_after_its_idle_ttl(watchdog_factory) -> None:
    watchdog = watchdog_factory(lease_timeout_s=60.0, idle_ttl_s=1.0)
    with LeaseKeeper(lambda: watchdog.client, "run-1", LeaseState(timeout_s=60.0)):
        pass
    assert watchdog.ended_within(15), "a released lease did not end the cluster after its idle TTL"


def test_idle_ttl_alone_ends_an_unleased_cluster(watchdog_factory) -> None:
    watchdog = watchdog_factory(lease_timeout_s=None, idle_ttl_s=2.0)
    assert watchdog.ended_within(15)


def test_requests_without_the_token_or_with_bad_input_are_refused(watchdog_factory) -> None:
    watchdog = watchdog_factory(lease_timeout_s=60.0)
    with pytest.raises(LeaseError, match="401"):
        LeaseClient(watchdog.url, "wrong-token").renew("intruder", 600)
    with pytest.raises(LeaseError, match="401"):
        LeaseClient(watchdog.url, None).view()
    with pytest.raises(LeaseError, match="400"):
        watchdog.client.renew("semi;colon", 60)
    with pytest.raises(LeaseError, match="400"):
        watchdog.client.renew("ok", -1)
    with pytest.raises(LeaseError, match="400"):
        watchdog.client.renew("ok", float("nan"))
    assert watchdog.client.view()["leases"] == [], "a refused request took a lease"


def test_each_holder_leaving_starts_ready_workers_for_the_next_run(watchdog_factory, tmp_path: Path) -> None:
    """On a warm cluster the watchdog runs the prestart program once per holder that releases its lease
    (taking and renewing leases do not count), one at a time; a stand-in program records each start."""
    starts = tmp_path / "starts"
    stand_in = f"open({str(starts)!r}, 'a').write('started\\n')"
    # An idle TTL: a cluster ending at once would stop the program it had just started.
    watchdog = watchdog_factory(lease_timeout_s=60.0, idle_ttl_s=60.0, prestart_stand_in=stand_in)
    watchdog.client.renew("run-1", 60)
    watchdog.client.renew("run-2", 60)
    watchdog.client.renew("run-1", 60)
    time.sleep(2.5)  # over two of the watchdog's ticks
    assert not starts.exists(), "a run arriving started workers: they would take its CPU"
    watchdog.client.release("run-1")
    assert wait_until(lambda: starts.exists() and starts.read_text().count("started") == 1, 10, 0.1)
    watchdog.client.release("run-1")  # not held any more: nobody left
    time.sleep(2.5)
    assert starts.read_text().count("started") == 1
    watchdog.client.release("run-2")
    assert wait_until(lambda: starts.read_text().count("started") == 2, 10, 0.1)


def test_departures_count_holders_that_released_their_lease() -> None:
    rules = Leases(grace_s=0, idle_ttl_s=10, now=0)
    rules.renew("a", ttl_s=60, now=1)
    rules.renew("b", ttl_s=60, now=2)
    assert rules.take_departures() == 0
    rules.release("a", now=3)
    rules.release("a", now=3)  # released twice: left once
    rules.release("nobody", now=3)
    assert rules.take_departures() == 1 and rules.take_departures() == 0
    rules.release("b", now=4)
    assert rules.take_departures() == 1


def test_a_keeper_that_cannot_take_its_lease_says_why() -> None:
    (port,) = free_ports(1)
    keeper = LeaseKeeper(lambda: LeaseClient(f"http://127.0.0.1:{port}", None), "x", LeaseState(timeout_s=5))
    keeper.start()
    try:
        with pytest.raises(LeaseError, match=r"not reachable.*custom head script"):
            keeper.wait_taken(timeout_s=1.5)
    finally:
        keeper.stop()


def test_a_head_whose_ray_has_not_answered_yet_is_starting_not_idle() -> None:
    rules = Leases(grace_s=0, idle_ttl_s=5, now=0, startup_s=60)
    rules.activity(None, now=30)  # the dashboard is not up yet
    assert rules.ends_in(now=40) > 0, "an idle TTL shorter than Ray's start ended the head before it ran"
    rules.activity(False, now=40)  # Ray answers: idle from now
    assert rules.ends_in(now=45) <= 0


def test_the_first_lease_ends_the_start_up_grace() -> None:
    rules = Leases(grace_s=600, idle_ttl_s=0, now=0)  # the build may take ten minutes to take it
    rules.renew("builder", ttl_s=5, now=10)
    assert rules.ends_in(now=16) <= 0, "once taken, a lapsed lease ends the cluster, not the build grace"


# -- the cluster's lifetime, counted from its creation ----------------------------------------------------


def test_a_late_local_node_gets_only_what_is_left_of_the_cluster_lifetime(local_backend) -> None:
    """`cluster_lifetime` is the cluster's: a node started later does not outlive it, and a cluster past
    its lifetime takes no new node (stand-in nodes: `sleep`)."""
    handle = local_backend.open_cluster(
        ClusterOptions(name="late", namespace="raydog", lifetime=timedelta(seconds=120))
    )
    cluster_id = handle.cluster_id
    sleeper = NodeLaunch(role=NodeRole.HEAD, pool_name="late-head", script="exec sleep 600\n", env={})
    try:
        with local_backend._manifest(local_backend._directory(cluster_id)) as manifest:
            manifest.created_at -= timedelta(seconds=100)  # the cluster is 100 s old
        _, (node_id,) = local_backend.create_pool(cluster_id, sleeper, 1)
        ref = local_backend.node_process(cluster_id, node_id)
        argv = psutil.Process(ref.pid).cmdline()
        assert argv[:2] == ["timeout", "--kill-after=10"] and 15 <= int(argv[2]) <= 20, argv

        with local_backend._manifest(local_backend._directory(cluster_id)) as manifest:
            manifest.created_at -= timedelta(seconds=30)  # now past its lifetime
        with pytest.raises(RayDogError, match="reached its lifetime"):
            local_backend.add_nodes(cluster_id, "late-head", sleeper, 1)
    finally:
        local_backend.shut_down(cluster_id)
    assert local_backend.live_resources() == []


def test_a_custom_head_script_without_the_watchdog_gets_no_lease_and_a_warning(caplog) -> None:
    terms = LeaseState(timeout_s=120)
    assert leases.without_watchdog(terms, default_script("head"), "c") == terms
    with caplog.at_level("WARNING", logger="raydog"):
        assert leases.without_watchdog(terms, "#!/bin/bash\nexec ray start --head --block\n", "c") is None
    assert "does not start the watchdog" in caplog.text
