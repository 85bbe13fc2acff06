"""The YellowDog path: a flow on a cluster provisioned through the real yellowdog-sdk against the emulator.

The emulator's instances are processes on this machine, so Ray is reached directly; the fixture fails
the module if any work requirement, pool, instance or task process is left alive.
"""

from __future__ import annotations

import pytest
from prefect import flow, task
from pydantic import SecretStr

from raydog_core.spec import NodeResources
from raydog_core.testing.emulator import DEFAULT_TEMPLATES
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, YellowDogCredentials

pytestmark = pytest.mark.slow


@task
def double(x: int) -> int:
    return 2 * x


def test_flow_on_emulated_yellowdog_leaves_nothing_alive(yellowdog_emulator) -> None:
    (template,) = DEFAULT_TEMPLATES
    credentials = yellowdog_emulator.cluster_kwargs()
    config = RayDogClusterConfig(
        backend="yellowdog",
        cluster_name="prefect-yd",
        head_node_compute_requirement_template_id=template,
        head_node_resources=NodeResources(num_cpus=2),
        worker_pools=[],
        ray_connection="direct",
        yellowdog_credentials=YellowDogCredentials(
            application_key_id=credentials["yd_application_key_id"],
            application_key_secret=SecretStr(credentials["yd_application_key_secret"]),
            platform_api_url=credentials["yd_platform_api_url"],
        ),
    )

    @flow(task_runner=RayDogTaskRunner(cluster=config))
    def on_yellowdog() -> list[int]:
        return double.map(range(3)).result()

    assert on_yellowdog() == [0, 2, 4]
    assert yellowdog_emulator.wait_until_clean() == []
