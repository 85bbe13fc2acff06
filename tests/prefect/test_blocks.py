"""The Blocks: Prefect's standard checks, the mapping onto ClusterSpec, saving, loading and registering."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.settings import PREFECT_API_URL
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from pydantic import SecretStr, ValidationError

from raydog_core.spec import ClusterSpec
from raydog_prefect import RayDogClusterConfig, YellowDogCredentials

CONNECTION_FIELDS = {
    "yellowdog_credentials",
    "ray_connection",
    "ssh_user",
    "ssh_private_key_file",
    "ssh_port",
    "ssh_known_hosts_file",
    "ssh_host_key_fingerprint",
    "ssh_skip_host_key_check",
}


class TestClusterConfigStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return RayDogClusterConfig


class TestCredentialsStandards(BlockStandardTestSuite):
    @pytest.fixture
    def block(self) -> type[Block]:
        return YellowDogCredentials


def test_cluster_fields_are_exactly_the_cluster_spec_fields() -> None:
    assert set(RayDogClusterConfig.model_fields) - CONNECTION_FIELDS == set(ClusterSpec.model_fields)


def test_validation_is_cluster_specs_and_names_the_field() -> None:
    with pytest.raises(ValidationError, match=r"cluster_name: 'Bad Name' is not a valid name .*'bad-name'"):
        RayDogClusterConfig(cluster_name="Bad Name")
    with pytest.raises(
        ValidationError, match=r"worker_pool: unknown field .did you mean 'worker_pools'. .*spelling"
    ):
        RayDogClusterConfig(worker_pool=[])
    with pytest.raises(ValidationError, match=r"head_node_compute_requirement_template_id: required"):
        RayDogClusterConfig(backend="yellowdog")
    with pytest.raises(ValidationError, match=r"worker_node_task_script: script file .* does not exist"):
        RayDogClusterConfig(
            worker_pools=[{"worker_pool_node_count": 1, "worker_node_task_script": "/no/such.sh"}]
        )


def test_default_is_a_local_head_and_one_worker() -> None:
    spec = RayDogClusterConfig().to_spec()
    assert spec.backend == "local"
    assert [pool.worker_pool_node_count for pool in spec.worker_pools] == [1]


def test_spec_round_trip(tmp_path: Path) -> None:
    script = tmp_path / "worker.sh"
    script.write_text("#!/bin/bash\nexec ray start --block $RAYDOG_RAY_START_ARGS\n")
    spec = ClusterSpec(
        cluster_name="etl",
        cluster_labels={"team": "data"},
        cluster_lifetime=timedelta(hours=2),
        worker_pools=[{"worker_pool_node_count": 3, "worker_node_task_script": script}],
    )
    round_tripped = RayDogClusterConfig.from_spec(spec).to_spec()
    assert round_tripped.model_dump(mode="json") == spec.model_dump(mode="json")


def test_saved_and_loaded_by_name_with_the_secret_hidden() -> None:
    credentials = YellowDogCredentials(
        application_key_id="key-id", application_key_secret=SecretStr("s3cret!")
    )
    config = RayDogClusterConfig(
        cluster_name="saved",
        backend="yellowdog",
        head_node_compute_requirement_template_id="tmpl",
        worker_pools=[{"worker_pool_node_count": 2, "worker_node_compute_requirement_template_id": "tmpl"}],
        cluster_lifetime=timedelta(minutes=30),
        yellowdog_credentials=credentials,
    )
    config.save("saved-config", overwrite=True)

    loaded = RayDogClusterConfig.load("saved-config")
    assert loaded.to_spec() == config.to_spec()
    assert loaded.yellowdog_credentials.application_key_secret.get_secret_value() == "s3cret!"
    assert "s3cret!" not in repr(loaded) and "s3cret!" not in str(loaded.to_spec())
    assert loaded.credentials().key_secret.get_secret_value() == "s3cret!"
    assert "s3cret!" not in repr(loaded.credentials())


def test_no_collection_entry_point_and_cli_registration() -> None:
    """No `prefect.collections` entry point: Prefect imports every collection in every process (Ray
    with it, or a warning where prefect-ray is missing). The Block types register with the CLI."""
    assert not [e for e in entry_points(group="prefect.collections") if e.name == "raydog_prefect"]
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    prefect_cli = Path(sys.executable).parent / "prefect"
    result = subprocess.run(
        [str(prefect_cli), "block", "register", "-m", "raydog_prefect"],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Successfully registered 2 blocks" in result.stdout
