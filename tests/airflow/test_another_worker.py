"""A task on another Airflow worker: it has the cluster's state (XCom) but not the token file the build
left on its own worker. With $RAYDOG_RAY_AUTH_TOKEN set on every worker (the token the cluster was built
with), it takes the DAG run's lease, submits a job and grows the cluster; without it, it is told what
to set. The token goes only to the head the backend vouches for."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from dag_runs import live

from raydog_airflow.hooks.raydog import job_client
from raydog_airflow.hooks.settings import RayDogConnectionSettings, ray_token
from raydog_core import RayDogCluster, auth
from raydog_core.errors import StateError
from raydog_core.spec import ClusterSpec

pytestmark = pytest.mark.slow

SHARED_TOKEN = "c0ffee" * 10 + "abcd"  # what a secrets manager would hand every worker


def test_a_task_without_the_token_file_uses_the_shared_token(
    raydog_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(auth.TOKEN_ENV_VAR, SHARED_TOKEN)
    spec = ClusterSpec(cluster_name="elsewhere", worker_pools=[], lease_timeout=timedelta(minutes=2))
    cluster = owner = RayDogCluster(spec=spec)
    try:
        cluster.build(lease=True, hold_lease=False)
        state = cluster.state
        assert auth.load_token(state.cluster_id) == SHARED_TOKEN
        auth.delete_token(state.cluster_id)  # this is now a worker that did not build the cluster

        monkeypatch.delenv(auth.TOKEN_ENV_VAR)
        with pytest.raises(StateError, match=f"set {auth.TOKEN_ENV_VAR} on every worker"):
            ray_token(state)

        monkeypatch.setenv(auth.TOKEN_ENV_VAR, SHARED_TOKEN)
        settings = RayDogConnectionSettings()
        with settings.hold_lease(state, "dag-run-1"):
            holders = [lease["holder"] for lease in RayDogCluster.from_state(state).lease_view()["leases"]]
            assert "dag-run-1" in holders
            with settings.dashboard_url(state) as url:
                client = job_client(url, state)
                job_id = client.submit_job(entrypoint="echo from-another-worker")
                deadline = time.monotonic() + 120
                while not client.get_job_status(job_id).is_terminal() and time.monotonic() < deadline:
                    time.sleep(1)
                assert str(client.get_job_status(job_id)) == "SUCCEEDED"
                assert "from-another-worker" in client.get_job_logs(job_id)
            owner = RayDogCluster.from_state(state)  # new nodes get the token: the shared one, here
            owner.add_worker_pool(worker_pool_node_count=1, worker_pool_internal_name="late")
            assert owner.wait_for_nodes(2, timeout=120) == 2  # the worker joined the token-protected Ray
        assert auth.load_token(state.cluster_id) is None, "nothing wrote the token to this worker's disk"
    finally:
        if owner.cluster_id:
            RayDogCluster.from_state(owner.state).shut_down()
    assert live(raydog_home) == []
