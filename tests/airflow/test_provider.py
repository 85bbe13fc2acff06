"""Fast checks of the provider's parts: registration, the connection, ids, operator wiring."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG, TriggerRule

from raydog_airflow.hooks.raydog import RayDogHook
from raydog_airflow.hooks.settings import RayDogConnectionSettings
from raydog_airflow.operators import RayDogBuildOperator, RayDogShutdownOperator
from raydog_airflow.ray_jobs import submission_id_base, submission_id_for_try, submit_or_attach
from raydog_core.errors import SpecError


def test_provider_is_registered() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.providers["raydog"].data["connection-types"][0]["connection-type"] == "raydog"
    assert manager.field_behaviours["raydog"]["hidden_fields"] == ["schema", "port"]
    assert "extra__raydog__ssh_private_key" in manager.connection_form_widgets


def test_provider_info_imports_neither_the_core_nor_ray() -> None:
    """Airflow reads it in every process that discovers providers: it must stay a cheap literal."""
    probe = (
        "import sys; from raydog_airflow.get_provider_info import get_provider_info; get_provider_info(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('raydog_core', 'ray', 'airflow')))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_provider_info_version_is_the_package_version() -> None:
    from raydog_airflow.get_provider_info import get_provider_info
    from raydog_core import __version__

    assert get_provider_info()["versions"] == [version("raydog")] == [__version__]


def test_settings_default_to_local_and_switch_to_yellowdog_with_a_key() -> None:
    assert RayDogConnectionSettings.from_fields().backend == "local"
    settings = RayDogConnectionSettings.from_fields(
        host="http://127.0.0.1:9", login="key-id", password="s3cret-value", extra={"namespace": "ns"}
    )
    assert settings.backend == "yellowdog" and settings.namespace == "ns"
    assert settings.credentials.api_url == "http://127.0.0.1:9"
    assert "s3cret-value" not in repr(settings)
    legacy = RayDogConnectionSettings.from_fields(extra={"extra__raydog__backend": "local"})
    assert legacy.backend == "local"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"extra": {"backend": "kubernetes"}}, "backend"),
        ({"extra": {"backend": "yellowdog"}}, "login/password"),
        ({"extra": {"ssh_user": "me", "ssh_private_key": "k", "ssh_port": "twenty-two"}}, "ssh_port"),
        ({"extra": {"ssh_user": "me"}}, "ssh_private_key_file"),  # no way to log in
    ],
)
def test_bad_connection_names_the_field(fields: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as error:
        RayDogConnectionSettings.from_fields(conn_id="mine", **fields)
    assert error.value.field == f"connection mine: {field}"


def test_hook_reads_the_connection_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    conn = {"conn_type": "raydog", "extra": {"backend": "local", "namespace": "from-env"}}
    monkeypatch.setenv("AIRFLOW_CONN_RAYDOG_DEFAULT", json.dumps(conn))
    hook = RayDogHook()
    assert hook.get_conn().namespace == "from-env"
    assert hook.test_connection()[0] is True


def test_hook_without_default_connection_means_local(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_RAYDOG_DEFAULT", raising=False)
    assert RayDogHook().get_conn() == RayDogConnectionSettings()


def test_submission_ids_are_stable_per_task_instance() -> None:
    base = submission_id_base("dag", "manual__2025-01-01T00:00:00+00:00", "task")
    assert base == submission_id_base("dag", "manual__2025-01-01T00:00:00+00:00", "task")
    assert base != submission_id_base("dag", "manual__2025-01-02T00:00:00+00:00", "task")
    assert submission_id_for_try(base, 1) == base and submission_id_for_try(base, 3) == f"{base}-try3"


class _Jobs:
    """A stand-in for JobSubmissionClient's list/submit, to test the re-attach branches only."""

    def __init__(self, **statuses: str) -> None:
        self.jobs = {
            job_id: SimpleNamespace(submission_id=job_id, status=s) for job_id, s in statuses.items()
        }
        self.submitted: list[str] = []

    def list_jobs(self) -> list[Any]:
        return list(self.jobs.values())

    def submit_job(self, *, submission_id: str, **_: Any) -> str:
        self.submitted.append(submission_id)
        return submission_id


def test_retry_reattaches_to_a_running_job_and_retries_a_failed_one() -> None:
    running = _Jobs(base="RUNNING")
    assert submit_or_attach(running, "base", 2, {"entrypoint": "x"}) == ("base", True)
    assert running.submitted == []
    failed = _Jobs(base="FAILED")
    assert submit_or_attach(failed, "base", 2, {"entrypoint": "x"}) == ("base-try2", False)
    fresh = _Jobs()
    assert submit_or_attach(fresh, "base", 1, {"entrypoint": "x"}) == ("base", False)


class _JobsAgentStarting(_Jobs):
    """Ray's Jobs API while the head's job agent registers: its first answers are a 500."""

    def __init__(
        self, refusals: int, error: str = "No available agent to submit job, please try again later."
    ) -> None:
        super().__init__()
        self.refusals, self.error = refusals, error

    def submit_job(self, *, submission_id: str, **kwargs: Any) -> str:
        if self.refusals > 0:
            self.refusals -= 1
            raise RuntimeError(f"Request failed with status code 500: {self.error}")
        return super().submit_job(submission_id=submission_id, **kwargs)


def test_a_job_waits_for_the_heads_job_agent_and_other_refusals_are_final() -> None:
    starting = _JobsAgentStarting(refusals=2)
    assert submit_or_attach(starting, "base", 1, {"entrypoint": "x"}) == ("base", False)
    assert starting.submitted == ["base"] and starting.refusals == 0
    refused = _JobsAgentStarting(refusals=1, error="bad runtime_env")
    with pytest.raises(RuntimeError, match="bad runtime_env"):
        submit_or_attach(refused, "base", 1, {"entrypoint": "x"})
    assert refused.submitted == []


def test_shutdown_stays_all_done_as_a_teardown() -> None:
    with DAG(dag_id="wiring", schedule=None):
        build = RayDogBuildOperator(task_id="build", spec={"cluster_name": "w"})
        shutdown = RayDogShutdownOperator(task_id="shutdown", cluster_state=build.output)
        build.as_setup() >> shutdown.as_teardown(setups=build)
        plain = RayDogShutdownOperator(task_id="plain", cluster_state=build.output, teardown=False)
    assert shutdown.is_teardown and shutdown.trigger_rule == TriggerRule.ALL_DONE
    assert not plain.is_teardown and plain.trigger_rule == TriggerRule.ALL_SUCCESS
    assert "build" in shutdown.upstream_task_ids
