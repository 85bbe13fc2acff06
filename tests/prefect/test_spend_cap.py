"""A flow run on a capped YellowDog cluster (max_node_hours, through the emulator and the real SDK): the
flow run's own log warns at 80 % of the cap, and the cap's platform allowance goes with the cluster."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prefect import flow, task
from prefect_helpers import flow_run_logs
from pydantic import SecretStr

from raydog_core import spend_watch
from raydog_core.spec import NodeResources
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, YellowDogCredentials

pytestmark = pytest.mark.slow

CAP = 10  # node-hours; the head alone, aged 8.5 h by the emulator, has used 85 % of it


@task
def double(x: int) -> int:
    return 2 * x


@flow
def capped() -> list[int]:
    """Tasks on the cluster, then the flow waits (bounded) for the cap's warning in its own log. Imports
    inside: a flow of a test module is shipped to Ray by value, with what it names."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter
    from prefect.context import FlowRunContext

    results = double.map(range(3)).result()
    run = FlowRunContext.get()
    assert run is not None and run.flow_run is not None
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            logs = client.read_logs(LogFilter(flow_run_id={"any_": [run.flow_run.id]}))
        if any("of its spend cap" in entry.message for entry in logs):
            break
        time.sleep(0.5)
    return results


def _age_the_platform_once_the_cluster_runs(emulator: Emulator, stop: threading.Event) -> None:
    """The platform's clock moves 8.5 h once the head's instance runs: 8.5 of the 10 node-hours used."""
    while not stop.is_set():
        if any(r.startswith("instance") for r in emulator.live_resources()):
            emulator.pass_time(hours=8.5)
            return
        time.sleep(0.2)


def test_a_capped_flow_run_is_warned_at_80_percent_in_its_own_log(
    raydog_home: Path, yellowdog_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spend_watch, "INTERVAL_S", 0.2)  # a minute in production: allowances count hours
    kwargs = yellowdog_emulator.cluster_kwargs()
    config = RayDogClusterConfig(
        backend="yellowdog",
        cluster_name="prefect-capped",
        head_node_compute_requirement_template_id=DEFAULT_TEMPLATES[0],
        head_node_resources=NodeResources(num_cpus=2),
        worker_pools=[],
        max_node_hours=CAP,
        ray_connection="direct",
        yellowdog_credentials=YellowDogCredentials(
            application_key_id=kwargs["yd_application_key_id"],
            application_key_secret=SecretStr(kwargs["yd_application_key_secret"]),
            platform_api_url=kwargs["yd_platform_api_url"],
        ),
    )

    stop = threading.Event()
    clock = threading.Thread(target=_age_the_platform_once_the_cluster_runs, args=(yellowdog_emulator, stop))
    clock.start()
    try:
        state = capped.with_options(task_runner=RayDogTaskRunner(cluster=config))(return_state=True)
    finally:
        stop.set()
        clock.join()
    assert state.result() == [0, 2, 4]
    messages = flow_run_logs(state.state_details.flow_run_id)
    assert any(
        "prefect-capped has used 85% of its spend cap (8.5 of 10 node-hours)" in m for m in messages
    ), [m for m in messages if "spend" in m]
    assert not any("used up its spend cap" in m for m in messages)
    assert yellowdog_emulator.wait_until_clean() == []  # the cap's allowance went with the cluster
