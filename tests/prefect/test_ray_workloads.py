"""The Ray workload examples (Ray Data, Tune, Train) run for real as Prefect flows.

The three flows share one warm local cluster (same spec, same reuse key), as users running them one
after another do: the first builds it, the others attach. Each test checks the figures its flow logs,
that the Ray workers ran the code the spec's runtime_env shipped; one more flow on the same cluster
checks that the runner's own runtime_env joins the spec's; the last test that one cluster served them
all and that nothing is left once it is shut down.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from prefect import flow, task
from prefect_helpers import flow_run_logs

from raydog_core.backends.local.backend import LocalBackend
from raydog_core.errors import SpecError
from raydog_core.runtime_envs import merged_runtime_env
from raydog_core.testing.leaks import count_leaks
from raydog_core.testing.warm import shut_down_warm, warm_clusters
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prefect"
ENV_VARS = {"RAYDOG_EXAMPLE_MODE": "mine"}
REUSE_KEY = "ray-workloads"  # examples/workloads/raydog_workloads/cluster.py


def load_examples() -> ModuleType:
    """examples/prefect/ray_workloads.py, imported as the example's users import it."""
    spec = importlib.util.spec_from_file_location("example_ray_workloads", EXAMPLES / "ray_workloads.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def shared_cluster(raydog_home: Path) -> Iterator[LocalBackend]:
    """The warm cluster the flows share, shut down after the module whatever happened."""
    backend = LocalBackend(raydog_home / "local")
    yield backend
    shut_down_warm(backend, REUSE_KEY)


def run_example(name: str) -> tuple[dict[str, Any], list[str]]:
    """Run the example flow; its result and its flow run's log messages."""
    state = getattr(load_examples(), name)(return_state=True)
    assert state.is_completed(), state
    return state.result(), flow_run_logs(state.state_details.flow_run_id)


def logged(logs: list[str], prefix: str) -> str:
    (line,) = [message for message in logs if message.startswith(prefix)]
    return line


@pytest.mark.slow
def test_ray_data_pipeline(shared_cluster: LocalBackend) -> None:
    figures, logs = run_example("ray_data_pipeline")
    assert figures["rows"] == 10_000
    assert figures["sum_id"] == 49_995_000 == figures["expected_sum_id"]
    assert figures["sum_square"] == 333_283_335_000 == figures["expected_sum_square"]
    assert figures["rows_by_shipped_code"] == 10_000, "Ray Data's workers did not run the shipped code"
    line = logged(logs, "Ray Data:")
    assert "10000 rows; sum of id = 49995000" in line and "sum of id^2 = 333283335000" in line, line
    assert any("warm RayDog cluster" in message for message in logs), logs


@pytest.mark.slow
def test_ray_tune_sweep(shared_cluster: LocalBackend) -> None:
    figures, logs = run_example("ray_tune_sweep")
    assert (figures["trials"], figures["errors"]) == (4, 0)
    assert figures["best_config"] == {"x": 3, "y": -1} and figures["best_score"] == pytest.approx(0.25)
    assert figures["trials_by_shipped_code"] == 4, "Tune's trials did not run the shipped code"
    assert "best config x=3, y=-1 with score 0.2500" in logged(logs, "Ray Tune:")


@pytest.mark.slow
def test_ray_train_run(shared_cluster: LocalBackend) -> None:
    figures, logs = run_example("ray_train_run")
    assert (figures["workers"], figures["epochs"]) == (2, 60)
    assert figures["loss"] < 1e-4, figures
    assert figures["w"] == pytest.approx([2.0, -3.0], abs=1e-2) and figures["b"] == pytest.approx(
        0.5, abs=1e-2
    )
    assert figures["shipped"], "Ray Train's workers did not run the shipped code"
    line = logged(logs, "Ray Train:")
    assert "2 workers, 60 epochs; final loss" in line and "b = 0.5" in line, line


@pytest.mark.slow
def test_runner_s_own_runtime_env_joins_the_spec_s_on_the_nodes(shared_cluster: LocalBackend) -> None:
    """The example spec's runtime_env (working_dir) with the runner's own (env_vars), on a Ray worker."""
    spec = load_examples().SPEC  # the same spec: the warm cluster again

    @task
    def on_a_node() -> tuple[str | None, bool]:
        from raydog_workloads import shipped_copy  # only there through the spec's working_dir

        return os.environ.get("RAYDOG_EXAMPLE_MODE"), shipped_copy()

    @flow(task_runner=RayDogTaskRunner(cluster=spec, init_kwargs={"runtime_env": {"env_vars": ENV_VARS}}))
    def probe() -> tuple[str | None, bool]:
        return on_a_node.submit().result()

    assert probe() == ("mine", True)


@pytest.mark.slow
def test_one_warm_cluster_served_every_flow_and_nothing_is_left(
    shared_cluster: LocalBackend, raydog_home: Path
) -> None:
    clusters = warm_clusters(shared_cluster, REUSE_KEY)
    assert len(clusters) == 1, clusters  # the second and third flows attached to the first's cluster
    shut_down_warm(shared_cluster, REUSE_KEY)
    assert shared_cluster.live_resources() == []
    assert count_leaks(raydog_home, wait_s=30).total == 0


# -- the spec's runtime_env in the runner and the Block, without a cluster -------------------------------


def test_runner_s_own_runtime_env_goes_over_the_spec_s() -> None:
    spec_env = {"working_dir": "/code", "env_vars": {"MODE": "spec", "LEVEL": "1"}, "pip": ["a"]}
    own = {"working_dir": "/mine", "env_vars": {"MODE": "mine"}}
    assert merged_runtime_env(spec_env, own) == {
        "working_dir": "/mine",
        "env_vars": {"MODE": "mine", "LEVEL": "1"},
        "pip": ["a"],
    }
    assert merged_runtime_env(spec_env, None) == spec_env and merged_runtime_env(None, None) == {}


def test_the_block_takes_runtime_env_and_refuses_a_secret_in_it(tmp_path: Path) -> None:
    runtime_env = {"working_dir": str(tmp_path), "env_vars": {"MODE": "x"}}
    RayDogClusterConfig(runtime_env=runtime_env).save("runtime-env", overwrite=True)
    assert RayDogClusterConfig.load("runtime-env").to_spec().runtime_env == runtime_env
    assert "runtime_env" in RayDogClusterConfig.model_json_schema()["properties"]
    with pytest.raises(
        (SpecError, ValueError), match=r"runtime_env\['env_vars'\]\['DB_PASSWORD'\].*Secret Block"
    ):
        RayDogClusterConfig(runtime_env={"env_vars": {"DB_PASSWORD": "hunter2"}})
