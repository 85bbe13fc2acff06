"""Spec inputs that pass a type check and would misbehave later are refused before anything exists.

Each case is a spec (given to RayDogCluster), an add_worker_pool call or a build() whose pools ask for more
GPUs than the machine has: it must raise SpecError naming the field and a fix, and leave no process and
no cluster directory behind. No Ray starts here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from raydog_core import RayDogCluster, SpecError
from raydog_core.autoscaler.config import bootstrap
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.spec import load_spec_file
from raydog_core.state import ClusterState, PoolState

NAME = "bad-spec"
UNKNOWN = "spelling"  # the fix of every unknown field
NAME_FIX = "lower-case letters"
LIFETIME_FIX = "timedelta(hours=2)"
RESOURCE_FIX = "special_hardware"
AMOUNT_FIX = "finite number"
MIB_FIX = "64 TiB"
NOT_BOOL = "write a number"
GPU_FIX = "num_gpus=0"


def pool(**fields: Any) -> dict[str, Any]:
    return {"worker_pools": [{"worker_pool_node_count": 1, **fields}]}


def head(**resources: Any) -> dict[str, Any]:
    return {"head_node_resources": resources}


def spec(fields: dict[str, Any]) -> Callable[[], object]:
    return lambda: RayDogCluster(cluster_name=NAME, **fields)


def add_worker_pool(*args: Any, **kwargs: Any) -> Callable[[], object]:
    """An add_worker_pool call on a cluster that already plans a pool named "w"."""

    def call() -> object:
        cluster = RayDogCluster(cluster_name=NAME, **pool(worker_pool_internal_name="w"))
        return cluster.add_worker_pool(*args, **kwargs)

    return call


def build(fields: dict[str, Any], *pools: dict[str, Any]) -> Callable[[], object]:
    def call() -> object:
        cluster = RayDogCluster(cluster_name=NAME, **fields)
        for extra in pools:
            cluster.add_worker_pool(**extra)
        return cluster.build()

    return call


CASES = [
    # names: a trailing newline, spaces, capitals, too long
    pytest.param(
        lambda: RayDogCluster(cluster_name=NAME + "\n"), "cluster_name", NAME_FIX, id="name-newline"
    ),
    pytest.param(spec({"cluster_namespace": "ns\n"}), "cluster_namespace", NAME_FIX, id="namespace-newline"),
    pytest.param(spec({"cluster_tag": "tag\n"}), "cluster_tag", NAME_FIX, id="tag-newline"),
    pytest.param(
        spec(pool(worker_pool_internal_name="cpu\n")),
        "worker_pools.0.worker_pool_internal_name",
        "e.g. 'cpu'",
        id="pool-name-newline",
    ),
    pytest.param(
        spec(pool(worker_pool_internal_name="GPU Pool")),
        "worker_pools.0.worker_pool_internal_name",
        "e.g. 'gpu-pool'",
        id="pool-name-space",
    ),
    pytest.param(
        spec(pool(worker_pool_internal_name="p" * 61)),
        "worker_pools.0.worker_pool_internal_name",
        "60 characters",
        id="pool-name-long",
    ),
    pytest.param(
        add_worker_pool(1, worker_pool_internal_name="cpu\n"),
        "worker_pool_internal_name",
        NAME_FIX,
        id="add-pool-name-newline",
    ),
    # cluster_lifetime: `timeout 0` would mean no limit; a year is a typo
    pytest.param(
        spec({"cluster_lifetime": timedelta(seconds=0.4)}),
        "cluster_lifetime",
        LIFETIME_FIX,
        id="lifetime-0.4s",
    ),
    pytest.param(spec({"cluster_lifetime": 59}), "cluster_lifetime", LIFETIME_FIX, id="lifetime-59s"),
    pytest.param(
        spec({"cluster_lifetime": timedelta(days=32)}), "cluster_lifetime", LIFETIME_FIX, id="lifetime-32d"
    ),
    pytest.param(spec({"cluster_lifetime": "P1Y"}), "cluster_lifetime", LIFETIME_FIX, id="lifetime-1y"),
    # custom resources: names the node scripts would split or glob, amounts Ray refuses after the head started
    pytest.param(
        spec(head(resources={"big memory": 1})),
        "head_node_resources.resources['big memory']",
        RESOURCE_FIX,
        id="resource-space",
    ),
    pytest.param(
        spec(pool(worker_node_resources={"resources": {"gpu*": 1}})),
        "worker_pools.0.worker_node_resources.resources['gpu*']",
        RESOURCE_FIX,
        id="resource-glob",
    ),
    pytest.param(
        spec(head(resources={"slot[1]": 1})),
        "head_node_resources.resources['slot[1]']",
        RESOURCE_FIX,
        id="resource-bracket",
    ),
    pytest.param(
        spec(head(resources={"x\n": 1})),
        "head_node_resources.resources['x\\n']",
        RESOURCE_FIX,
        id="resource-newline",
    ),
    pytest.param(
        spec(head(resources={"CPU": 2})),
        "head_node_resources.resources['CPU']",
        "use num_cpus",
        id="resource-builtin",
    ),
    pytest.param(
        spec(head(resources={"x": -1})),
        "head_node_resources.resources['x']",
        AMOUNT_FIX,
        id="resource-negative",
    ),
    pytest.param(
        spec(head(resources={"x": math.nan})),
        "head_node_resources.resources['x']",
        AMOUNT_FIX,
        id="resource-nan",
    ),
    pytest.param(
        spec(head(resources={"x": math.inf})),
        "head_node_resources.resources['x']",
        AMOUNT_FIX,
        id="resource-inf",
    ),
    pytest.param(
        spec(head(resources={"x": True})), "head_node_resources.resources.x", NOT_BOOL, id="resource-bool"
    ),
    # CPU, GPU and memory amounts
    pytest.param(
        spec(head(num_cpus=math.nan)), "head_node_resources.num_cpus", "finite number", id="cpus-nan"
    ),
    pytest.param(spec(head(num_cpus=-1)), "head_node_resources.num_cpus", ">= 0", id="cpus-negative"),
    pytest.param(
        spec(pool(worker_node_resources={"num_gpus": math.inf})),
        "worker_pools.0.worker_node_resources.num_gpus",
        "finite number",
        id="gpus-inf",
    ),
    pytest.param(spec(head(num_gpus=-1)), "head_node_resources.num_gpus", ">= 0", id="gpus-negative"),
    pytest.param(spec(head(memory_mb=math.nan)), "head_node_resources.memory_mb", "MiB", id="memory-nan"),
    pytest.param(spec(head(memory_mb=-5)), "head_node_resources.memory_mb", "MiB", id="memory-negative"),
    pytest.param(
        spec(head(memory_mb=64 * 1024 * 1024 + 1)),
        "head_node_resources.memory_mb",
        MIB_FIX,
        id="memory-65tib",
    ),
    pytest.param(
        spec(head(memory_mb=8 * 1024**3)), "head_node_resources.memory_mb", MIB_FIX, id="memory-bytes-as-mib"
    ),
    pytest.param(
        spec(pool(worker_node_resources={"object_store_mb": math.inf})),
        "worker_pools.0.worker_node_resources.object_store_mb",
        MIB_FIX,
        id="object-store-inf",
    ),
    pytest.param(
        spec(head(object_store_mb=10**9)),
        "head_node_resources.object_store_mb",
        MIB_FIX,
        id="object-store-huge",
    ),
    # labels and instance tags
    pytest.param(
        spec({"cluster_labels": {"": "x"}}), "cluster_labels['']", "e.g. 'team'", id="label-key-empty"
    ),
    pytest.param(
        spec({"cluster_labels": {"k" * 64: "x"}}),
        f"cluster_labels['{'k' * 64}']",
        "e.g. 'team'",
        id="label-key-long",
    ),
    pytest.param(
        spec({"cluster_labels": {"my team": "x"}}),
        "cluster_labels['my team']",
        "cost-centre",
        id="label-key-space",
    ),
    pytest.param(
        spec({"cluster_labels": {"team\n": "x"}}),
        "cluster_labels['team\\n']",
        "cost-centre",
        id="label-key-newline",
    ),
    pytest.param(
        spec({"cluster_labels": {"team": ""}}), "cluster_labels['team']", "non-empty", id="label-value-empty"
    ),
    pytest.param(
        spec({"cluster_labels": {"team": "v" * 256}}),
        "cluster_labels['team']",
        "non-empty",
        id="label-value-long",
    ),
    pytest.param(
        spec({"cluster_labels": {"team": "a\nb"}}),
        "cluster_labels['team']",
        "remove newlines",
        id="label-value-newline",
    ),
    pytest.param(
        spec({"head_node_instance_tags": {"cost centre": "x"}}),
        "head_node_instance_tags['cost centre']",
        "cost-centre",
        id="head-tag-key-space",
    ),
    pytest.param(
        spec({"observability_node_instance_tags": {"": "x"}}),
        "observability_node_instance_tags['']",
        "e.g. 'team'",
        id="obs-tag-key-empty",
    ),
    pytest.param(
        spec(pool(worker_node_instance_tags={"k": "a\x00b"})),
        "worker_pools.0.worker_node_instance_tags['k']",
        "remove newlines",
        id="worker-tag-value-nul",
    ),
    pytest.param(
        add_worker_pool(1, worker_node_instance_tags={"k": "\t"}),
        "worker_node_instance_tags['k']",
        "remove newlines",
        id="add-pool-tag-value-tab",
    ),
    # gpu_ids
    pytest.param(spec({"gpu_ids": [-1]}), "gpu_ids", "nvidia-smi", id="gpu-ids-negative"),
    pytest.param(spec({"gpu_ids": [0, 1, 0]}), "gpu_ids", "each GPU once", id="gpu-ids-duplicate"),
    pytest.param(spec({"gpu_ids": [True]}), "gpu_ids", NOT_BOOL, id="gpu-ids-bool"),
    # True/False where a number belongs (bool is an int in Python)
    pytest.param(
        spec({"worker_pools": [{"worker_pool_node_count": True}]}),
        "worker_pools.0.worker_pool_node_count",
        NOT_BOOL,
        id="count-true",
    ),
    pytest.param(add_worker_pool(True), "worker_pool_node_count", NOT_BOOL, id="add-pool-count-true"),
    pytest.param(spec(head(num_cpus=False)), "head_node_resources.num_cpus", NOT_BOOL, id="cpus-false"),
    pytest.param(spec(head(memory_mb=True)), "head_node_resources.memory_mb", NOT_BOOL, id="memory-true"),
    pytest.param(spec({"cluster_lifetime": True}), "cluster_lifetime", NOT_BOOL, id="lifetime-true"),
    pytest.param(spec({"build_timeout": True}), "build_timeout", NOT_BOOL, id="build-timeout-true"),
    # unknown keys are named as unknown, even when they also leave a required field missing
    pytest.param(
        spec(pool(worker_node_scrpt="x")),
        "worker_pools.0.worker_node_scrpt",
        "did you mean 'worker_node_task_script'",
        id="pool-key-typo",
    ),
    pytest.param(
        spec({"worker_pools": [{"worker_pool_node_cont": 2}]}),
        "worker_pools.0.worker_pool_node_cont",
        "did you mean 'worker_pool_node_count'",
        id="pool-count-typo",
    ),
    pytest.param(
        spec(head(num_cpu=2)),
        "head_node_resources.num_cpu",
        "did you mean 'num_cpus'",
        id="resources-key-typo",
    ),
    pytest.param(
        add_worker_pool(1, worker_pol_internal_name="x"),
        "worker_pol_internal_name",
        "did you mean 'worker_pool_internal_name'",
        id="add-pool-key-typo",
    ),
    pytest.param(
        add_worker_pool(1, worker_node_resources={"num_gpu": 1}),
        "worker_node_resources.num_gpu",
        "did you mean 'num_gpus'",
        id="add-pool-resources-typo",
    ),
    pytest.param(
        add_worker_pool(1, worker_pool_internal_name="a", worker_pool_internal_nam="b"),
        "worker_pool_internal_nam",
        UNKNOWN,
        id="add-pool-extra-key",
    ),
    # GPUs: every pool's ask is checked against the machine before the head (or any node) starts
    pytest.param(
        build({"gpu_ids": [0], **pool(worker_node_resources={"num_gpus": 1})}),
        "worker_pools.0.worker_node_resources.num_gpus",
        GPU_FIX,
        id="gpus-pool-over-machine",
    ),
    pytest.param(
        build({"gpu_ids": [0, 1], "worker_pools": [{"worker_pool_node_count": 2}]}),
        "worker_pools.0.worker_node_resources.num_gpus",
        GPU_FIX,
        id="gpus-default-one-each",
    ),
    pytest.param(
        build({"gpu_ids": [], **head(num_gpus=1)}),
        "head_node_resources.num_gpus",
        GPU_FIX,
        id="gpus-head-none",
    ),
    pytest.param(
        build({"gpu_ids": [0, 1, 2]}, {"worker_pool_node_count": 3}),
        "add_worker_pool.worker_node_resources.num_gpus",
        GPU_FIX,
        id="gpus-added-pool",
    ),
    pytest.param(
        add_worker_pool(1, worker_pool_internal_name="w"),
        "add_worker_pool.worker_pool_internal_name",
        "own name",
        id="add-pool-duplicate-name",
    ),
]


def cluster_directories(local_backend: LocalBackend) -> list[Path]:
    return sorted(local_backend.root.glob(f"{NAME}-*")) if local_backend.root.is_dir() else []


@pytest.mark.parametrize(("attempt", "field", "fix"), CASES)
def test_refused_before_anything_exists(
    attempt: Callable[[], object], field: str, fix: str, local_backend: LocalBackend
) -> None:
    assert cluster_directories(local_backend) == []
    with pytest.raises(SpecError) as caught:
        attempt()
    error = caught.value
    assert error.field == field, str(error)
    assert error.fix and fix in str(error), str(error)
    assert local_backend.live_resources() == []
    assert cluster_directories(local_backend) == []


@pytest.mark.parametrize(
    ("yaml_text", "field", "fix"),
    [
        ('cluster_name: "demo\\n"\n', "cluster_name", NAME_FIX),
        (
            "cluster_name: demo\nworker_pools:\n  - worker_pool_node_count: yes\n",
            "worker_pools.0.worker_pool_node_count",
            NOT_BOOL,
        ),
        ("cluster_name: demo\ncluster_lifetime: PT30S\n", "cluster_lifetime", LIFETIME_FIX),
        (
            "cluster_name: demo\nhead_node_resources:\n  resources: {'*': 1}\n",
            "head_node_resources.resources['*']",
            RESOURCE_FIX,
        ),
    ],
    ids=["name-newline", "count-yes", "lifetime-30s", "resource-glob"],
)
def test_spec_files_are_refused_the_same_way(
    yaml_text: str, field: str, fix: str, tmp_path: Path, local_backend: LocalBackend
) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml_text)
    with pytest.raises(SpecError) as caught:
        load_spec_file(path)
    assert caught.value.field == field and fix in str(caught.value), str(caught.value)
    assert local_backend.live_resources() == []


def ray_up_config(provider: dict[str, Any] | None = None, **node_types: Any) -> dict[str, Any]:
    types = {"ray.head.default": {"resources": {"CPU": 1}}, **node_types}
    return {
        "cluster_name": "demo",
        "provider": {"type": "external", **(provider or {})},
        "available_node_types": types,
        "head_node_type": "ray.head.default",
    }


@pytest.mark.parametrize(
    ("config", "field", "fix"),
    [
        (ray_up_config({"cluster_lifetime_hours": 0.001}), "provider.cluster_lifetime_hours", "e.g. 2"),
        (ray_up_config({"cluster_lifetime_hours": 1e12}), "provider.cluster_lifetime_hours", "e.g. 2"),
        (ray_up_config({"ssh_port": True}), "provider.ssh_port", NOT_BOOL),
        (ray_up_config(**{"ray.worker\n": {}}), "available_node_types['ray.worker\\n']", "ray.worker.cpu"),
        (
            ray_up_config(**{"w": {"resources": {"CPU": 2.5}}}),
            "available_node_types.w.resources.num_cpus",
            "whole number",
        ),
        (
            ray_up_config(**{"w": {"resources": {"memory": math.nan}}}),
            "available_node_types.w.resources.memory",
            "GiB",
        ),
        (
            ray_up_config(**{"w": {"resources": {"a b": 1}}}),
            "available_node_types.w.resources.resources['a b']",
            RESOURCE_FIX,
        ),
    ],
    ids=[
        "lifetime-tiny",
        "lifetime-huge",
        "port-bool",
        "type-newline",
        "cpu-fraction",
        "memory-nan",
        "resource-space",
    ],
)
def test_ray_up_configs_are_refused_the_same_way(config: dict[str, Any], field: str, fix: str) -> None:
    with pytest.raises(SpecError) as caught:
        bootstrap(config)
    assert caught.value.field == field and fix in str(caught.value), str(caught.value)


def test_state_saved_before_the_stricter_rules_still_attaches(local_backend: LocalBackend) -> None:
    """A cluster whose labels or pool names the spec now refuses must still be reachable to shut it down."""
    state = ClusterState(
        backend="local",
        cluster_id="old-1234",
        cluster_name="old",
        cluster_namespace="raydog",
        labels={"my team": "x"},
        phase="running",
        pools=[PoolState(pool_id="p1", raydog_id="old-w1", role="worker", internal_name="GPU pool")],
    )
    cluster = RayDogCluster.from_state(state.to_json())
    assert cluster.worker_pool_internal_names == ["GPU pool"]
    assert cluster.spec.cluster_labels == {"my team": "x"}
