"""Fixtures for the local backend: an isolated RAYDOG_HOME per test session and a leak check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from raydog_core import commands, processes
from raydog_core.backends.local.backend import LocalBackend


def assert_no_local_leaks(root: Path) -> None:
    """Fail if any process of any cluster under `root`, or any command run for one, is still alive
    (stopping them first)."""
    backend = LocalBackend(root / "local")
    leaks = backend.live_resources()
    running = commands.live(home=root)
    leaks += [f"command pid {ref.pid} of cluster {cluster}" for cluster, ref in running]
    if leaks:
        for record in backend.list_clusters():
            backend.shut_down(record.cluster_id)
        processes.stop_sessions([ref for _, ref in running])
        raise AssertionError("processes left behind: " + "; ".join(leaks))


@pytest.fixture(scope="session")
def raydog_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A private RAYDOG_HOME for the whole test session; at the end nothing may be left alive in it."""
    home = tmp_path_factory.mktemp("raydog-home")
    patcher = pytest.MonkeyPatch()
    patcher.setenv("RAYDOG_HOME", str(home))
    try:
        yield home
    finally:
        patcher.undo()
        assert_no_local_leaks(home)


@pytest.fixture
def local_backend(raydog_home: Path) -> Iterator[LocalBackend]:
    """The local backend; a test that leaves a process alive fails here."""
    backend = LocalBackend(raydog_home / "local")
    yield backend
    leaks = backend.live_resources()
    assert not leaks, f"test left processes behind: {leaks}"
