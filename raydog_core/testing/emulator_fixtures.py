"""pytest fixture for the YellowDog platform emulator, with the leak check built in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from raydog_core.backends.yellowdog import task_outputs
from raydog_core.backends.yellowdog.placement import PLACEMENT_ENV
from raydog_core.testing.emulator import Emulator, Faults

SEED_ENV = "RAYDOG_EMULATOR_FAULT_SEED"  # which requests fail, when a test turns errors on: to try others


@pytest.fixture(scope="module")
def yellowdog_emulator() -> Iterator[Emulator]:
    """A YellowDog emulator on a free loopback port, shared by the tests of a module.

    Point RayDog at it with `RayDogCluster(backend="yellowdog", **yellowdog_emulator.cluster_kwargs(), ...)`
    and a template from `DEFAULT_TEMPLATES` ("raydog/emulated"). Turn faults on through
    `yellowdog_emulator.faults`; they are reset after the module, and drawn from $RAYDOG_EMULATOR_FAULT_SEED
    (default 1). When the module ends, every work requirement, pool, compute requirement, instance and
    task process must be gone, or the fixture fails (`running_emulator`).
    """
    with running_emulator(faults=Faults(seed=int(os.environ.get(SEED_ENV, "1")))) as emulator:
        yield emulator


@contextmanager
def running_emulator(**options: Any) -> Iterator[Emulator]:
    """A started emulator, checked for leaks when the block ends: everything created on it must be gone.

    Meanwhile RAYDOG_YELLOWDOG_NODE_PLACEMENT is `shared_host`, so backends that integrations build for
    themselves (a Prefect Block, an Airflow hook, `ray up`) place nodes on this host as the emulator's
    instances are; and RAYDOG_YELLOWDOG_TASK_OUTPUT_URL is the emulator's store, so nodes' output reaches
    post-mortems. Credentials stay explicit (`credentials()`, `cluster_kwargs()`).
    """
    emulator = Emulator(**options).start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(PLACEMENT_ENV, emulator.placement.value)
            patch.setenv(task_outputs.URL_ENV, emulator.task_output_url)
            yield emulator
        emulator.faults.error_rate = 0.0
        leaks = emulator.wait_until_clean()
    finally:
        failures = emulator.stop()
    assert not leaks, f"the tests left YellowDog resources alive: {leaks}"
    assert not failures, f"emulator processes that would not stop: {failures}"
