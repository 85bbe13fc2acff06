"""Fixtures of the fault tests: tests parametrized by `backend` ("local" or "yellowdog") get the
client environment for it and, on YellowDog, the module's emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

from raydog_core.testing.emulator import Emulator
from tests.faults.clients import yellowdog_env


@pytest.fixture
def emulator_or_none(request: pytest.FixtureRequest) -> Emulator | None:
    if request.node.callspec.params["backend"] == "yellowdog":
        return request.getfixturevalue("yellowdog_emulator")
    return None


@pytest.fixture
def env(
    emulator_or_none: Emulator | None, raydog_home: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The client environment for the test's backend; YellowDog credentials are also set in this process
    (as YD_API_* variables, the documented way), so proxies and `ray` subprocesses find them."""
    if emulator_or_none is None:
        return {}
    extra = yellowdog_env(emulator_or_none)
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    return extra
