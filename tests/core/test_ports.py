"""Free ports for nodes sharing one host: never one Ray binds regardless of its arguments, never one an
outgoing connection may take (the kernel's ephemeral range), never one bound on another address."""

from __future__ import annotations

import socket
from collections import deque
from collections.abc import Iterator

import pytest

from raydog_core import ports


def _offering(*offered: int) -> Iterator[int]:
    yield from offered


@pytest.fixture(autouse=True)
def _nothing_given_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other tests in this process were handed ports; a port they got is rightly not offered again,
    which made a port these tests expect look taken (seen in CI)."""
    monkeypatch.setattr(ports, "_recently_given", deque(maxlen=4096))


def test_ray_fixed_ports_are_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node given 44217 as its node manager port crashed when its own head's autoscaler monitor took
    44217 first (seen in CI): Ray's fixed ports are skipped like recently given ones."""
    free = [p for p in range(21000, 21100) if ports._is_free(p)][:2]
    monkeypatch.setattr(
        ports, "_candidates", lambda: _offering(44217, 44227, 52365, 8265, 6379, 10001, *free)
    )
    assert ports.free_ports(2) == free


def test_a_port_bound_on_another_address_is_not_free(monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: a port free on 127.0.0.1 was bound on the node's own address, and the head's
    dashboard agent could not bind it, so no job could ever be submitted. The check binds the wildcard."""
    with socket.socket() as other:
        other.bind(("127.0.0.2", 0))  # another address of this host (all of 127/8 is loopback)
        busy = other.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", busy))  # free here: the old check's view
        free = next(p for p in range(21100, 21200) if ports._is_free(p))
        monkeypatch.setattr(ports, "_candidates", lambda: _offering(busy, free))
        assert ports.free_ports(1) == [free]


def test_real_free_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    low, _ = ports.ephemeral_range()
    chosen = ports.free_ports(8)
    assert len(set(chosen)) == 8 and not set(chosen) & ports.RAY_FIXED_PORTS
    assert all(ports.LOWEST_PORT <= port < low for port in chosen), (chosen, low)
    for port in chosen:
        with socket.socket() as sock:
            sock.bind(("", port))
    assert not set(ports.free_ports(8)) & set(chosen)  # not handed out again by this process
