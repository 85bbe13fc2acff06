"""A real flow with planted canary secrets (a YellowDogCredentials block holding the key secret, the Ray token
from $RAYDOG_RAY_AUTH_TOKEN): the Prefect API's logs of the flow and task runs, the saved block's
documents and reprs, the flow run's state and result, RAYDOG_HOME and the emulator's node sandboxes hold
neither secret."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect_helpers import flow_run_logs
from pydantic import SecretStr

from raydog_core import auth
from raydog_core.spec import NodeResources
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator
from raydog_core.testing.secrets_scan import (
    assert_no_secrets,
    canary,
    emulator_with_key_secret,
    scan_text,
    scan_tree,
)
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, YellowDogCredentials

pytestmark = pytest.mark.slow

RAY_TOKEN = canary("raytoken")
YD_SECRET = canary("ydsecret")
CANARIES = {"Ray token": RAY_TOKEN, "YellowDog key secret": YD_SECRET}


@pytest.fixture(scope="module")
def canary_emulator() -> Iterator[Emulator]:
    with emulator_with_key_secret(YD_SECRET) as emulator:
        yield emulator


@task
def double(x: int) -> int:
    return 2 * x


def test_flow_on_yellowdog_leaks_no_secret(
    raydog_home: Path, canary_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(auth.TOKEN_ENV_VAR, RAY_TOKEN)
    kwargs = canary_emulator.cluster_kwargs()
    YellowDogCredentials(
        application_key_id=kwargs["yd_application_key_id"],
        application_key_secret=SecretStr(YD_SECRET),
        platform_api_url=kwargs["yd_platform_api_url"],
    ).save("canary-credentials", overwrite=True)
    credentials = YellowDogCredentials.load("canary-credentials")
    config = RayDogClusterConfig(
        backend="yellowdog",
        cluster_name="prefect-canary",
        head_node_compute_requirement_template_id=DEFAULT_TEMPLATES[0],
        head_node_resources=NodeResources(num_cpus=2),
        worker_pools=[],
        ray_connection="direct",
        yellowdog_credentials=credentials,
    )
    config.save("canary-config", overwrite=True)

    @flow(task_runner=RayDogTaskRunner(cluster=RayDogClusterConfig.load("canary-config")))
    def on_yellowdog() -> list[int]:
        return double.map(range(3)).result()

    state = on_yellowdog(return_state=True)
    assert state.result() == [0, 2, 4]
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
        task_runs = client.read_task_runs()
        documents = [
            client.read_block_document_by_name(name, block_type_slug=slug, include_secrets=False)
            for name, slug in [
                ("canary-credentials", YellowDogCredentials.get_block_type_slug()),
                ("canary-config", RayDogClusterConfig.get_block_type_slug()),
            ]
        ]
        stored = client.read_block_document_by_name(
            "canary-credentials", block_type_slug=YellowDogCredentials.get_block_type_slug()
        )
    # Positive control: the canary really went into the block, so its absence elsewhere means something.
    assert YD_SECRET in repr(stored.data)
    logs = flow_run_logs(flow_run_id)
    assert logs, "the flow run should have logged something to scan"
    texts = {
        "flow and task run logs": "\n".join(logs),
        "flow run": repr(flow_run),
        "task runs": repr([run for run in task_runs if run.flow_run_id == flow_run_id]),
        "final state": repr(state),
        "block documents": repr(documents),
        "credentials block": repr(credentials) + str(credentials),
        "config block": repr(config) + str(config.to_spec()),
    }
    assert "double" in texts["task runs"]  # the task runs are there to scan
    hits = [hit for where, text in texts.items() for hit in scan_text(where, text, CANARIES)]
    hits += scan_tree([raydog_home], CANARIES, allowed=[raydog_home / "tokens"])
    hits += scan_tree([canary_emulator.root], {"YellowDog key secret": YD_SECRET})
    assert_no_secrets(hits)
    assert canary_emulator.wait_until_clean() == []
