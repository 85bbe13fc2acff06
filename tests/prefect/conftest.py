"""A real Prefect server for the session (prefect_test_harness) and helpers shared by the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from prefect.testing.utilities import prefect_test_harness

from raydog_core.backends.local.backend import LocalBackend


@pytest.fixture(scope="session", autouse=True)
def prefect_server(raydog_home: Path) -> Iterator[None]:
    """One Prefect server (temporary SQLite database) for every test of this directory."""
    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture(autouse=True)
def no_ray_connection_left() -> Iterator[None]:
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
        pytest.fail("a test left this process connected to Ray")


@pytest.fixture
def backend(raydog_home: Path) -> LocalBackend:
    return LocalBackend(raydog_home / "local")
