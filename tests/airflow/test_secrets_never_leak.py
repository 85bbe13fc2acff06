"""A real DAG run with planted canary secrets (the YellowDog key secret in an AIRFLOW_CONN_ connection, the
Ray token from $RAYDOG_RAY_AUTH_TOKEN): no XCom row, task log, console output, RAYDOG_HOME file or
emulator node sandbox holds either of them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dag_runs import live, load_dag, task_states, xcom_rows, xcom_value

from raydog_core import auth
from raydog_core.testing.emulator import Emulator
from raydog_core.testing.secrets_scan import (
    assert_no_secrets,
    canary,
    emulator_with_key_secret,
    scan_text,
    scan_tree,
)

pytestmark = pytest.mark.slow

RAY_TOKEN = canary("raytoken")
YD_SECRET = canary("ydsecret")
CANARIES = {"Ray token": RAY_TOKEN, "YellowDog key secret": YD_SECRET}


@pytest.fixture(scope="module")
def canary_emulator() -> Iterator[Emulator]:
    with emulator_with_key_secret(YD_SECRET) as emulator:
        yield emulator


def test_yellowdog_dag_leaks_no_secret(
    airflow_db: Path,
    raydog_home: Path,
    canary_emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    kwargs = canary_emulator.cluster_kwargs()
    connection = {
        "conn_type": "raydog",
        "host": kwargs["yd_platform_api_url"],
        "login": kwargs["yd_application_key_id"],
        "password": YD_SECRET,
        "extra": {"backend": "yellowdog", "namespace": "raydog-airflow"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_RAYDOG_YD", json.dumps(connection))
    monkeypatch.setenv(auth.TOKEN_ENV_VAR, RAY_TOKEN)

    dag_run = load_dag("raydog_test_yellowdog").test()

    assert str(dag_run.state) == "success", task_states(dag_run)
    assert xcom_value(dag_run, "build_cluster")["backend"] == "yellowdog"
    output = capfd.readouterr()
    assert "yellowdog job sees 2 nodes" in output.out + output.err  # the job ran with the planted token
    rows = xcom_rows(dag_run)
    assert rows, "the run should have pushed XComs (cluster state)"
    hits = [
        hit for task, key, value in rows for hit in scan_text(f"xcom {task}/{key}", repr(value), CANARIES)
    ]
    hits += [
        hit
        for task, key, value in rows
        for hit in scan_text(f"xcom {task}/{key}", json.dumps(value, default=str), CANARIES)
    ]
    hits += scan_text("console output", output.out + output.err, CANARIES)
    hits += scan_tree([airflow_db / "logs", raydog_home], CANARIES, allowed=[raydog_home / "tokens"])
    hits += scan_tree([canary_emulator.root], {"YellowDog key secret": YD_SECRET})
    assert_no_secrets(hits)
    assert canary_emulator.wait_until_clean() == []
    assert live(raydog_home) == []
