"""Spec inputs that pass a type check and would misbehave later are refused before anything exists.

Each case is a spec (given to RayDogCluster), an add_worker_pool call or a build() whose pools ask for more
GPUs than the machine has: it must raise SpecError naming the field and a fix, and leave no process and
no cluster directory behind. No Ray starts here.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from raydog_core import RayDogCluster, SpecError
from raydog_core.autoscaler.config import bootstrap
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.runtime_envs import RUNTIME_ENV_KEYS
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
COUNT = "worker_pool_node_count"
INTERNAL = "worker_pool_internal_name"
TAGS = "worker_node_instance_tags"
POOL = "worker_pools.0"
HEAD = "head_node_resources"
RES = f"{HEAD}.resources"
WRES = f"{POOL}.worker_node_resources"
RTE = "runtime_env"
CODE_FIX = "existing directory or .zip file"
SECRET_FIX = "Prefect Secret Block or an Airflow connection"


def pool(**fields: Any) -> dict[str, Any]:
    return {"worker_pools": [{COUNT: 1, **fields}]}


def head(**resources: Any) -> dict[str, Any]:
    return {"head_node_resources": resources}


def spec(fields: dict[str, Any]) -> Callable[[], object]:
    return lambda: RayDogCluster(cluster_name=NAME, **fields)


def labels(values: dict[str, str]) -> Callable[[], object]:
    return spec({"cluster_labels": values})


def runtime_env(value: dict[str, Any]) -> Callable[[], object]:
    return spec({"runtime_env": value})


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


# id: (attempt, the field the error names, words of its fix)
BAD: dict[str, tuple[Callable[[], object], str, str]] = {
    # names: a trailing newline, spaces, capitals, too long
    "name-newline": (lambda: RayDogCluster(cluster_name=NAME + "\n"), "cluster_name", NAME_FIX),
    "namespace-newline": (spec({"cluster_namespace": "ns\n"}), "cluster_namespace", NAME_FIX),
    "tag-newline": (spec({"cluster_tag": "tag\n"}), "cluster_tag", NAME_FIX),
    "pool-name-newline": (spec(pool(worker_pool_internal_name="cpu\n")), f"{POOL}.{INTERNAL}", "e.g. 'cpu'"),
    "pool-name-space": (spec(pool(worker_pool_internal_name="GPU Pool")), f"{POOL}.{INTERNAL}", "'gpu-pool'"),
    "pool-name-long": (spec(pool(worker_pool_internal_name="p" * 61)), f"{POOL}.{INTERNAL}", "60 characters"),
    "add-pool-name-newline": (add_worker_pool(1, worker_pool_internal_name="cpu\n"), INTERNAL, NAME_FIX),
    # cluster_lifetime: `timeout 0` would mean no limit; a year is a typo
    "lifetime-0.4s": (spec({"cluster_lifetime": timedelta(seconds=0.4)}), "cluster_lifetime", LIFETIME_FIX),
    "lifetime-59s": (spec({"cluster_lifetime": 59}), "cluster_lifetime", LIFETIME_FIX),
    "lifetime-32d": (spec({"cluster_lifetime": timedelta(days=32)}), "cluster_lifetime", LIFETIME_FIX),
    "lifetime-1y": (spec({"cluster_lifetime": "P1Y"}), "cluster_lifetime", LIFETIME_FIX),
    # custom resources: names node scripts would split or glob, amounts Ray refuses once the head runs
    "resource-space": (spec(head(resources={"big memory": 1})), f"{RES}['big memory']", RESOURCE_FIX),
    "resource-glob": (
        spec(pool(worker_node_resources={"resources": {"gpu*": 1}})),
        f"{WRES}.resources['gpu*']",
        RESOURCE_FIX,
    ),
    "resource-bracket": (spec(head(resources={"slot[1]": 1})), f"{RES}['slot[1]']", RESOURCE_FIX),
    "resource-newline": (spec(head(resources={"x\n": 1})), f"{RES}['x\\n']", RESOURCE_FIX),
    "resource-builtin": (spec(head(resources={"CPU": 2})), f"{RES}['CPU']", "use num_cpus"),
    "resource-negative": (spec(head(resources={"x": -1})), f"{RES}['x']", AMOUNT_FIX),
    "resource-nan": (spec(head(resources={"x": math.nan})), f"{RES}['x']", AMOUNT_FIX),
    "resource-inf": (spec(head(resources={"x": math.inf})), f"{RES}['x']", AMOUNT_FIX),
    "resource-bool": (spec(head(resources={"x": True})), f"{RES}.x", NOT_BOOL),
    # CPU, GPU and memory amounts
    "cpus-nan": (spec(head(num_cpus=math.nan)), f"{HEAD}.num_cpus", "finite number"),
    "cpus-negative": (spec(head(num_cpus=-1)), f"{HEAD}.num_cpus", ">= 0"),
    "gpus-inf": (
        spec(pool(worker_node_resources={"num_gpus": math.inf})),
        f"{WRES}.num_gpus",
        "finite number",
    ),
    "gpus-negative": (spec(head(num_gpus=-1)), f"{HEAD}.num_gpus", ">= 0"),
    "memory-nan": (spec(head(memory_mb=math.nan)), f"{HEAD}.memory_mb", "MiB"),
    "memory-negative": (spec(head(memory_mb=-5)), f"{HEAD}.memory_mb", "MiB"),
    "memory-65tib": (spec(head(memory_mb=64 * 1024 * 1024 + 1)), f"{HEAD}.memory_mb", MIB_FIX),
    "memory-bytes-as-mib": (spec(head(memory_mb=8 * 1024**3)), f"{HEAD}.memory_mb", MIB_FIX),
    "object-store-inf": (
        spec(pool(worker_node_resources={"object_store_mb": math.inf})),
        f"{WRES}.object_store_mb",
        MIB_FIX,
    ),
    "object-store-huge": (spec(head(object_store_mb=10**9)), f"{HEAD}.object_store_mb", MIB_FIX),
    # labels and instance tags
    "label-key-empty": (labels({"": "x"}), "cluster_labels['']", "e.g. 'team'"),
    "label-key-long": (labels({"k" * 64: "x"}), f"cluster_labels['{'k' * 64}']", "e.g. 'team'"),
    "label-key-space": (labels({"my team": "x"}), "cluster_labels['my team']", "cost-centre"),
    "label-key-newline": (labels({"team\n": "x"}), "cluster_labels['team\\n']", "cost-centre"),
    "label-value-empty": (labels({"team": ""}), "cluster_labels['team']", "non-empty"),
    "label-value-long": (labels({"team": "v" * 256}), "cluster_labels['team']", "non-empty"),
    "label-value-newline": (labels({"team": "a\nb"}), "cluster_labels['team']", "remove newlines"),
    "head-tag-key-space": (
        spec({"head_node_instance_tags": {"c c": "x"}}),
        "head_node_instance_tags['c c']",
        "cost-centre",
    ),
    "obs-tag-key-empty": (
        spec({"observability_node_instance_tags": {"": "x"}}),
        "observability_node_instance_tags['']",
        "'team'",
    ),
    "worker-tag-value-nul": (
        spec(pool(worker_node_instance_tags={"k": "a\x00b"})),
        f"{POOL}.{TAGS}['k']",
        "remove newlines",
    ),
    "add-pool-tag-value-tab": (
        add_worker_pool(1, worker_node_instance_tags={"k": "\t"}),
        f"{TAGS}['k']",
        "remove newlines",
    ),
    # gpu_ids
    "gpu-ids-negative": (spec({"gpu_ids": [-1]}), "gpu_ids", "nvidia-smi"),
    "gpu-ids-duplicate": (spec({"gpu_ids": [0, 1, 0]}), "gpu_ids", "each GPU once"),
    "gpu-ids-bool": (spec({"gpu_ids": [True]}), "gpu_ids", NOT_BOOL),
    # True/False where a number belongs (bool is an int in Python)
    "count-true": (spec({"worker_pools": [{COUNT: True}]}), f"{POOL}.{COUNT}", NOT_BOOL),
    "add-pool-count-true": (add_worker_pool(True), COUNT, NOT_BOOL),
    "cpus-false": (spec(head(num_cpus=False)), f"{HEAD}.num_cpus", NOT_BOOL),
    "memory-true": (spec(head(memory_mb=True)), f"{HEAD}.memory_mb", NOT_BOOL),
    "lifetime-true": (spec({"cluster_lifetime": True}), "cluster_lifetime", NOT_BOOL),
    "build-timeout-true": (spec({"build_timeout": True}), "build_timeout", NOT_BOOL),
    # unknown keys are named as unknown, even when they also leave a required field missing
    "pool-key-typo": (
        spec(pool(worker_node_scrpt="x")),
        f"{POOL}.worker_node_scrpt",
        "'worker_node_task_script'",
    ),
    "pool-count-typo": (
        spec({"worker_pools": [{"worker_pool_node_cont": 2}]}),
        f"{POOL}.worker_pool_node_cont",
        f"'{COUNT}'",
    ),
    "resources-key-typo": (spec(head(num_cpu=2)), f"{HEAD}.num_cpu", "did you mean 'num_cpus'"),
    "add-pool-key-typo": (
        add_worker_pool(1, worker_pol_internal_name="x"),
        "worker_pol_internal_name",
        f"'{INTERNAL}'",
    ),
    "add-pool-resources-typo": (
        add_worker_pool(1, worker_node_resources={"num_gpu": 1}),
        "worker_node_resources.num_gpu",
        "'num_gpus'",
    ),
    "add-pool-extra-key": (
        add_worker_pool(1, worker_pool_internal_nam="b"),
        "worker_pool_internal_nam",
        UNKNOWN,
    ),
    "add-pool-duplicate-name": (
        add_worker_pool(1, worker_pool_internal_name="w"),
        f"add_worker_pool.{INTERNAL}",
        "own name",
    ),
    # runtime_env: Ray's own keys, local code that exists, string variables, no secret in a kept spec
    "runtime-env-key-typo": (runtime_env({"workdir": "."}), f"{RTE}['workdir']", "'working_dir'"),
    "runtime-env-missing-dir": (
        runtime_env({"working_dir": "/no/such/dir"}),
        f"{RTE}['working_dir']",
        CODE_FIX,
    ),
    "runtime-env-missing-module": (
        runtime_env({"py_modules": ["s3://bucket/ok.zip", "/no/such/pkg"]}),
        f"{RTE}['py_modules'][1]",
        CODE_FIX,
    ),
    "runtime-env-modules-not-list": (
        runtime_env({"py_modules": "."}),
        f"{RTE}['py_modules']",
        "['./my_pkg']",
    ),
    "runtime-env-var-number": (
        runtime_env({"env_vars": {"WORKERS": 2}}),
        f"{RTE}['env_vars']['WORKERS']",
        "quote it: '2'",
    ),
    "runtime-env-var-name": (runtime_env({"env_vars": {"A=B": "x"}}), f"{RTE}['env_vars']['A=B']", "'MODE'"),
    "runtime-env-secret-key": (
        runtime_env({"env_vars": {"AWS_SECRET_ACCESS_KEY": "x"}}),
        f"{RTE}['env_vars']['AWS_SECRET_ACCESS_KEY']",
        SECRET_FIX,
    ),
    "runtime-env-api-key-words": (
        runtime_env({"env_vars": {"OPENAI_API_KEY": "x"}}),
        f"{RTE}['env_vars']['OPENAI_API_KEY']",
        SECRET_FIX,
    ),
    "runtime-env-token": (
        runtime_env({"env_vars": {"HF_TOKEN": "x"}}),
        f"{RTE}['env_vars']['HF_TOKEN']",
        SECRET_FIX,
    ),
    "runtime-env-password": (
        runtime_env({"env_vars": {"db_password": "x"}}),
        f"{RTE}['env_vars']['db_password']",
        SECRET_FIX,
    ),
    "runtime-env-api-key": (
        runtime_env({"env_vars": {"OpenAIApiKey": "x"}}),
        f"{RTE}['env_vars']['OpenAIApiKey']",
        SECRET_FIX,
    ),
    "runtime-env-callable": (runtime_env({"worker_process_setup_hook": print}), RTE, "strings, numbers"),
    "runtime-env-nan": (
        runtime_env({"config": {"setup_timeout_seconds": math.nan}}),
        RTE,
        "strings, numbers",
    ),
    # GPUs: every pool's ask is checked against the machine before the head (or any node) starts
    "gpus-pool-over-machine": (
        build({"gpu_ids": [0], **pool(worker_node_resources={"num_gpus": 1})}),
        f"{WRES}.num_gpus",
        GPU_FIX,
    ),
    "gpus-default-one-each": (
        build({"gpu_ids": [0, 1], "worker_pools": [{COUNT: 2}]}),
        f"{WRES}.num_gpus",
        GPU_FIX,
    ),
    "gpus-head-none": (build({"gpu_ids": [], **head(num_gpus=1)}), f"{HEAD}.num_gpus", GPU_FIX),
    "gpus-added-pool": (
        build({"gpu_ids": [0, 1, 2]}, {COUNT: 3}),
        "add_worker_pool.worker_node_resources.num_gpus",
        GPU_FIX,
    ),
}


def cluster_directories(local_backend: LocalBackend) -> list[Path]:
    return sorted(local_backend.root.glob(f"{NAME}-*")) if local_backend.root.is_dir() else []


@pytest.mark.parametrize(("attempt", "field", "fix"), list(BAD.values()), ids=list(BAD))
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


def test_runtime_env_keys_are_ray_s_own() -> None:
    """The keys a spec's runtime_env may hold are those the installed Ray takes, no more, no fewer."""
    from ray.runtime_env import RuntimeEnv

    arguments = set(inspect.signature(RuntimeEnv.__init__).parameters) - {"self", "_validate", "kwargs"}
    public_fields = {name for name in RuntimeEnv.known_fields if not name.startswith("_")}
    assert set(RUNTIME_ENV_KEYS) == arguments | public_fields


def test_a_good_runtime_env_is_kept_as_given(tmp_path: Path, local_backend: LocalBackend) -> None:
    given = {
        "working_dir": str(tmp_path),
        "py_modules": [str(tmp_path), "s3://bucket/code.zip"],
        "pip": ["requests==2.32.3"],
        "env_vars": {
            "MODE": "fast",
            "MONKEY_COUNT": "3",
            "SSH_KEY_PATH": "/k",
            "SORT_KEY": "id",
        },  # no secrets
        "config": {"setup_timeout_seconds": 600},
    }
    cluster = RayDogCluster(cluster_name=NAME, runtime_env=given)
    assert cluster.spec.runtime_env == given
    assert local_backend.live_resources() == []
