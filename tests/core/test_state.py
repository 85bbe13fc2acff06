"""Saved state: versioned, secret-free, and clear about what is wrong with it."""

from __future__ import annotations

import json
import re

import pytest

from raydog_core import ClusterState, RayDogClusterProxy, StateError
from raydog_core.state import HeadState, PoolState


def _state() -> ClusterState:
    return ClusterState(
        backend="local",
        cluster_id="demo-1234",
        cluster_name="demo",
        cluster_namespace="raydog",
        head=HeadState(node_id="demo-head-n1", private_ip="127.0.0.1", gcs_port=4000, dashboard_port=4001),
        pools=[PoolState(pool_id="demo-w1", raydog_id="demo-w1", role="worker", node_count=2)],
    )


def test_round_trip_keeps_upstream_keys() -> None:
    state = _state()
    data = json.loads(state.to_json())
    assert data["work_requirement_id"] == "demo-1234"
    assert data["worker_pool_ids"] == ["demo-w1"]
    assert ClusterState.from_json(state.to_json()) == state
    assert ClusterState.from_json(state.to_dict()) == state
    assert state.ray_address == "127.0.0.1:4000"
    assert state.dashboard_url == "http://127.0.0.1:4001"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"version": 99, "backend": "local"}', "version 99"),
        ('{"work_requirement_id": "ydid:workreq:1", "worker_pool_ids": []}', "upstream RayDog"),
        ('{"version": 1, "backend": "local"}', "corrupt: cluster_id"),
        (
            '{"version": 1, "backend": "mars", "cluster_id": "x", "cluster_name": "x", "cluster_namespace": "x"}',
            "backend",
        ),
    ],
)
def test_corrupt_state_gives_clear_error(text: str, words: str) -> None:
    with pytest.raises(StateError, match=words):
        ClusterState.from_json(text)


def test_stale_local_state_gives_clear_error(raydog_home) -> None:
    proxy = RayDogClusterProxy()
    proxy.load_saved_state_from_json(_state().to_json())
    with pytest.raises(StateError, match="no local cluster 'demo-1234'"):
        proxy.shut_down()


def test_missing_state_file(tmp_path) -> None:
    with pytest.raises(StateError, match="cannot read saved cluster state"):
        RayDogClusterProxy().load_saved_state_from_json_file(tmp_path / "missing.json")


def test_proxy_without_state() -> None:
    with pytest.raises(StateError, match="no saved state loaded"):
        RayDogClusterProxy().shut_down()


def _with(**changes) -> dict:
    data = json.loads(_state().to_json())
    for dotted, value in changes.items():
        target = data
        *path, last = dotted.split("__")
        for part in path:
            target = target[part]
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"version": True}, "version True"),
        ({"version": 1.0}, "version 1.0"),
        ({"version": "1"}, "version '1'"),
        ({"head__gcs_port": 0}, "head.gcs_port"),
        ({"head__dashboard_port": 70000}, "head.dashboard_port"),
        ({"head__client_port": "10001"}, "head.client_port"),
        ({"head__private_ip": "evil.example.com"}, "head.private_ip"),
        ({"cluster_id": "../../etc"}, "cluster_id"),
        ({"cluster_id": "/tmp/x"}, "cluster_id"),
        ({"cluster_id": "a" * 300}, "cluster_id"),
        ({"cluster_name": "Bad Name"}, "cluster_name"),
        ({"cluster_name": "demo\n"}, "cluster_name"),
        ({"cluster_namespace": ""}, "cluster_namespace"),
        ({"labels": {"k": "v\x07"}}, "labels"),
        ({"api_url": "ftp://x"}, "api_url"),
        ({"pools": [{"pool_id": "p", "role": "worker", "node_count": -1}]}, "pools.0.node_count"),
        ({"pools": [{"pool_id": "p", "role": "worker", "node_ids": ["../x"]}]}, "pools.0.node_ids"),
        ({"next_pool_index": 0}, "next_pool_index"),
        ({"head__lease_port": 0}, "head.lease_port"),
        ({"lease": {"timeout_s": -5}}, "lease.timeout_s"),
        ({"lease": {"timeout_s": 60, "idle_ttl_s": float("nan")}}, "lease.idle_ttl_s"),
        ({"lease": {"timeout_s": 60, "holder": "x"}}, "lease.holder"),
        ({"runtime_env": {"env_vars": {"DB_PASSWORD": "x"}}}, "DB_PASSWORD"),
        ({"runtime_env": {"workdir": "/x"}}, "did you mean 'working_dir'"),
        ({"worker_preload_modules": ["os; rm -rf /"]}, "is not a Python module name"),
        ({"lease": {"timeout_s": 60, "warm_workers": 99}}, "lease.warm_workers"),
    ],
)
def test_state_is_validated_like_a_spec(changes: dict, words: str) -> None:
    with pytest.raises(StateError, match=re.escape(words)):
        ClusterState.from_json(json.dumps(_with(**changes)))
    with pytest.raises(StateError, match=re.escape(words)):
        ClusterState.from_json(_with(**changes))  # an XCom dict, too


def test_deep_nesting_and_huge_state_are_refused_quickly() -> None:
    with pytest.raises(StateError, match="nested too deeply"):
        ClusterState.from_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(StateError, match="bytes long"):
        ClusterState.from_json('{"x": "' + "a" * (2 << 20) + '"}')


def test_state_naming_another_platform_is_refused_before_any_request(monkeypatch) -> None:
    """Credentials only ever go to the URL the caller configured, whatever the state says."""
    state = _state().model_copy(update={"backend": "yellowdog", "api_url": "http://127.0.0.1:9/evil"})
    monkeypatch.setenv("YD_API_KEY_ID", "key")
    monkeypatch.setenv("YD_API_KEY_SECRET", "secret")
    monkeypatch.setenv("YD_API_URL", "http://127.0.0.1:8/configured")
    proxy = RayDogClusterProxy()
    proxy.load_saved_state_from_json(state.to_json())
    with pytest.raises(StateError, match="credentials only go to the platform you configured"):
        proxy.shut_down()
    from raydog_core import RayDogCluster

    with pytest.raises(StateError, match=re.escape("names the YellowDog platform 'http://127.0.0.1:9/evil'")):
        RayDogCluster.from_state(state.to_json())


def test_state_carries_the_spec_s_runtime_env_whose_paths_are_the_builder_s() -> None:
    """A later task's driver (an Airflow job) uses it; its paths are checked where it is used."""
    env = {"working_dir": "/only/on/the/builder", "env_vars": {"MODE": "x"}}
    assert ClusterState.from_json(_with(runtime_env=env)).runtime_env == env


def test_nodes_added_from_saved_state_preload_what_the_build_preloaded(tmp_path, monkeypatch) -> None:
    """A pool added by another process (an Airflow task) gets the same worker imports as the build's."""
    from raydog_core.backends.base import NodeRole
    from raydog_core.backends.local.backend import LocalBackend
    from raydog_core.lifecycle import ClusterSession

    monkeypatch.setenv("RAYDOG_HOME", str(tmp_path))
    state = ClusterState.from_json(_with(worker_preload_modules=["pandas", "raydog_prefect.task_runner"]))
    session = ClusterSession.from_state(state, LocalBackend())
    for role in (NodeRole.HEAD, NodeRole.WORKER):
        env = session.node_environment(role)
        assert env["RAY_preload_python_modules"] == "pandas,raydog_prefect.task_runner"
    assert "RAY_preload_python_modules" not in session.node_environment(NodeRole.OBSERVABILITY)
