"""pytest fixture for the YellowDog platform emulator, with the leak check built in."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from raydog_core.backends.yellowdog.placement import PLACEMENT_ENV
from raydog_core.testing.emulator import Emulator, Faults

SEED_ENV = "RAYDOG_EMULATOR_FAULT_SEED"  # which requests fail, when a test turns errors on: to try others


@pytest.fixture(scope="module")
def yellowdog_emulator() -> Iterator[Emulator]:
    """A YellowDog emulator on a free loopback port, shared by the tests of a module.

    Point RayDog at it with `RayDogCluster(backend="yellowdog", **yellowdog_emulator.cluster_kwargs(), ...)`
    and a template from `DEFAULT_TEMPLATES` ("raydog/emulated"). Turn faults on through
    `yellowdog_emulator.faults`; they are reset after the module, and drawn from $RAYDOG_EMULATOR_FAULT_SEED
    (default 1). When the module ends, every work
    requirement, pool, compute requirement, instance and task process must be gone, or the fixture fails.

    While the module runs, RAYDOG_YELLOWDOG_NODE_PLACEMENT is `shared_host`: backends that integrations
    build for themselves (a Prefect Block, an Airflow hook, `ray up`) place nodes on this host as the
    emulator's instances are. Credentials stay explicit (`credentials()`, `cluster_kwargs()`).
    """
    emulator = Emulator(faults=Faults(seed=int(os.environ.get(SEED_ENV, "1")))).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(PLACEMENT_ENV, emulator.placement.value)
            yield emulator
        emulator.faults.error_rate = 0.0
        leaks = emulator.wait_until_clean()
    finally:
        failures = emulator.stop()
    assert not leaks, f"the tests left YellowDog resources alive: {leaks}"
    assert not failures, f"emulator processes that would not stop: {failures}"
