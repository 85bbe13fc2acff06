"""Invalid input is rejected before any process starts, with the field named and a fix offered."""

from __future__ import annotations

from datetime import timedelta

import pytest

from raydog_core import RayDogCluster, SpecError
from raydog_core.spec import ClusterSpec, load_spec_file


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cluster_name": "Demo"}, "cluster_name", "lower-case"),
        ({"cluster_name": "1demo"}, "cluster_name", "start with a letter"),
        ({"cluster_name": "demo-"}, "cluster_name", "end with a letter"),
        ({"cluster_name": "demo.cluster"}, "cluster_name", "demo-cluster"),
        ({"cluster_name": "x" * 56}, "cluster_name", "at most 55"),
        ({"cluster_name": ""}, "cluster_name", "non-empty"),
        ({"cluster_namespace": "My NS"}, "cluster_namespace", "valid name"),
        ({"head_node_ray_start_script": "no-such-script.sh"}, "head_node_ray_start_script", "does not exist"),
        ({"head_node_ray_start_script": "   \n  "}, "head_node_ray_start_script", "empty"),
        ({"cluster_lifetime": timedelta(seconds=-1)}, "cluster_lifetime", "between 1 minute"),
        ({"build_timeout": timedelta(0)}, "build_timeout", "positive"),
        ({"head_node_resources": {"num_cpus": -1}}, "head_node_resources.num_cpus", "greater than or equal"),
        ({"head_node_resources": {"object_store_mb": 10}}, "head_node_resources.object_store_mb", "80"),
        ({"colour": "blue"}, "colour", "spelling"),
        ({"backend": "kubernetes"}, "backend", "local"),
        ({"backend": "yellowdog"}, "head_node_compute_requirement_template_id", "template"),
        (
            {"worker_pools": [{"worker_pool_node_count": 1}, {"worker_pool_node_count": 0}]},
            "worker_pools.1.worker_pool_node_count",
            "greater than or equal to 1",
        ),
        (
            {
                "worker_pools": [
                    {"worker_pool_node_count": 1, "worker_pool_internal_name": "a"},
                    {"worker_pool_node_count": 1, "worker_pool_internal_name": "a"},
                ]
            },
            "worker_pool_internal_name",
            "more than once",
        ),
        (
            {"worker_pools": [{"worker_pool_node_count": 1, "worker_node_task_script": "missing.sh"}]},
            "worker_pools.0.worker_node_task_script",
            "does not exist",
        ),
    ],
)
def test_invalid_specs_name_the_field(fields: dict, field: str, words: str, local_backend) -> None:
    values = {"cluster_name": "demo", **fields}
    name = values.pop("cluster_name")
    before = local_backend.list_clusters()
    with pytest.raises(SpecError) as caught:
        RayDogCluster(cluster_name=name, **values)
    assert caught.value.field == field
    assert words in str(caught.value)
    assert local_backend.list_clusters() == before  # nothing was created


def test_bad_pool_and_timeout_rejected_before_anything_starts(local_backend) -> None:
    before = local_backend.list_clusters()
    cluster = RayDogCluster(cluster_name="demo")
    with pytest.raises(SpecError, match="worker_pool_node_count"):
        cluster.add_worker_pool(worker_pool_node_count=0)
    with pytest.raises(SpecError, match="worker_node_task_script"):
        cluster.add_worker_pool(worker_pool_node_count=1, worker_node_task_script="/no/such/file.sh")
    with pytest.raises(SpecError, match="head_node_build_timeout"):
        cluster.build(-5)
    assert local_backend.list_clusters() == before


def test_yellowdog_needs_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YD_API_KEY_ID", raising=False)
    monkeypatch.delenv("YD_API_KEY_SECRET", raising=False)
    with pytest.raises(SpecError, match="YD_API_KEY_ID"):
        RayDogCluster(cluster_name="demo", backend="yellowdog", head_node_compute_requirement_template_id="t")


def test_secret_never_in_repr_or_errors() -> None:
    cluster = RayDogCluster(
        cluster_name="demo",
        yd_application_key_id="key",
        yd_application_key_secret="canary-secret-123",
        head_node_compute_requirement_template_id="tmpl",
    )
    assert cluster.spec.backend == "yellowdog"
    assert "canary-secret-123" not in repr(cluster)
    assert "canary-secret-123" not in repr(cluster._credentials)


def test_spec_file_resolves_scripts_relative_to_itself(tmp_path, monkeypatch) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "worker.sh").write_text("#!/bin/bash\necho hi\n")
    spec_file = tmp_path / "cluster.yaml"
    spec_file.write_text(
        "cluster_name: fromfile\n"
        "worker_pools:\n"
        "  - worker_pool_node_count: 2\n"
        "    worker_node_task_script: scripts/worker.sh\n"
    )
    monkeypatch.chdir("/")
    spec = load_spec_file(spec_file)
    assert isinstance(spec, ClusterSpec)
    assert spec.worker_pools[0].worker_node_task_script == str(tmp_path / "scripts" / "worker.sh")


def test_spec_file_errors_are_clear(tmp_path) -> None:
    with pytest.raises(SpecError, match="does not exist"):
        load_spec_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cluster_name: [unclosed\n")
    with pytest.raises(SpecError, match="could not be parsed"):
        load_spec_file(bad)


def test_a_yaml_bomb_is_refused_quickly(tmp_path) -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]" for i in range(8)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("cluster_name: boom\n" + "\n".join(levels) + "\n")  # 10^9 values once expanded
    with pytest.raises(SpecError, match="YAML aliases"):  # expanding it would take minutes and gigabytes
        load_spec_file(bomb)
