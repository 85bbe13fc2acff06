"""Free ports for nodes sharing one host: never one Ray binds regardless of its arguments."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from raydog_core import ports


class _KernelHandingOut:
    """A socket whose bind(port 0) gets the next port of a fixed list, as the kernel's ephemeral pick
    might: the kernel cannot be made to choose 44217, so its choice is replaced here."""

    def __init__(self, offered: list[int]) -> None:
        self._offered = offered
        self._port = 0

    def __call__(self, *args: Any) -> _KernelHandingOut:
        return self

    def __enter__(self) -> _KernelHandingOut:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def bind(self, address: tuple[str, int]) -> None:
        self._port = self._offered.pop(0)

    def getsockname(self) -> tuple[str, int]:
        return ("127.0.0.1", self._port)


def test_ray_fixed_ports_are_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node given 44217 as its node manager port crashed when its own head's autoscaler monitor took
    44217 first (seen in CI): Ray's fixed ports are skipped like recently given ones."""
    offered = [44217, 44227, 52365, 8265, 6379, 10001, 40001, 40003]
    monkeypatch.setattr(socket, "socket", _KernelHandingOut(offered))
    assert ports.free_ports(2) == [40001, 40003]


def test_real_free_ports_are_distinct_and_bindable() -> None:
    chosen = ports.free_ports(8)
    assert len(set(chosen)) == 8 and not set(chosen) & ports.RAY_FIXED_PORTS
    for port in chosen:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))
