"""Saved state: versioned, secret-free, and clear about what is wrong with it."""

from __future__ import annotations

import json

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
