"""`raydog reap --run-finished prefect` asks the real Prefect API whether a cluster's flow run is over."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from prefect import flow, get_client
from prefect.client.schemas.objects import StateType

from raydog_core.backends.base import ClusterRecord
from raydog_prefect.run_status import PREFECT_RUN_LABEL, prefect_run_finished


def record(labels: dict[str, str]) -> ClusterRecord:
    return ClusterRecord("c-1", "c", "local", labels, datetime.now(UTC), live_nodes=1, state="running")


@flow
def quick() -> int:
    return 1


def test_finished_only_when_prefect_says_so() -> None:
    from prefect.settings import PREFECT_API_URL

    finished = prefect_run_finished(PREFECT_API_URL.value())
    completed = quick(return_state=True)
    assert completed.is_completed()
    run_id = str(completed.state_details.flow_run_id)
    assert finished(record({PREFECT_RUN_LABEL: run_id}))

    with get_client(sync_client=True) as client:
        scheduled = client.create_flow_run(quick)
    assert scheduled.state.type not in (StateType.COMPLETED, StateType.FAILED)
    assert not finished(record({PREFECT_RUN_LABEL: str(scheduled.id)}))
    assert not finished(record({PREFECT_RUN_LABEL: str(uuid4())}))  # unknown run: leave it alone
    assert not finished(record({}))  # not a Prefect cluster
