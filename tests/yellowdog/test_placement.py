"""Node placement is the constructor's choice, and platform refusals are judged by type and state: the
real backend against the emulator (whose URL is on loopback, which must change nothing by itself)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from conftest import SLEEP_SCRIPT, TEMPLATE
from yellowdog_client.model.exceptions import InvalidRequestException

from raydog_core.backends import create_backend
from raydog_core.backends.base import ClusterOptions, HeadPorts, NodeLaunch, NodeRole, ObservabilityPorts
from raydog_core.backends.yellowdog.backend import YellowDogBackend
from raydog_core.spec import NodePlacement, YellowDogNodeOptions
from raydog_core.testing.emulator import Emulator


def _launch(pool_name: str, template: str = TEMPLATE) -> NodeLaunch:
    return NodeLaunch(
        role=NodeRole.HEAD,
        pool_name=pool_name,
        script=SLEEP_SCRIPT,
        env={},
        yellowdog=YellowDogNodeOptions(compute_requirement_template_id=template),
    )


def test_a_platform_on_loopback_still_gets_the_placement_it_was_given(yellowdog_emulator: Emulator) -> None:
    backend = YellowDogBackend(yellowdog_emulator.credentials(), placement=NodePlacement.OWN_MACHINE)
    try:
        assert not backend.capabilities.nodes_reachable and not backend.capabilities.nodes_on_client_host
        handle = backend.open_cluster(ClusterOptions(name="own", namespace="raydog-test"))
        assert handle.ports == HeadPorts() and handle.observability == ObservabilityPorts()
        task = backend._task(handle.cluster_id, "head-abcdef", _launch("own-head"))
        args = task.environment["RAYDOG_RAY_START_ARGS"]
        assert "--temp-dir" not in args and "--num-gpus" not in args and "--port" not in args
        assert backend.shut_down(handle.cluster_id) == []
    finally:
        backend.close()


def test_the_fixture_chooses_shared_host_for_backends_built_elsewhere(yellowdog_emulator: Emulator) -> None:
    backend = create_backend("yellowdog", yellowdog_emulator.credentials())  # as an integration does
    try:
        assert backend.placement == NodePlacement.SHARED_HOST and backend.capabilities.nodes_on_client_host
        handle = backend.open_cluster(ClusterOptions(name="shared-host", namespace="raydog-test"))
        assert handle.ports != HeadPorts()
        assert backend.shut_down(handle.cluster_id) == []
    finally:
        backend.close()


def test_a_refusal_that_is_no_name_clash_is_raised_as_it_is(
    yellowdog_emulator: Emulator, raydog_home: Any
) -> None:
    backend = YellowDogBackend(yellowdog_emulator.credentials(), placement="shared_host")
    handle = backend.open_cluster(
        ClusterOptions(name="refused", namespace="raydog-test", lifetime=timedelta(minutes=5))
    )
    try:
        backend._check_template("raydog/emulated", "head_node_compute_requirement_template_id")
        # past the early check: the platform refuses
        backend._templates["raydog/missing"] = backend._templates["raydog/emulated"]
        with pytest.raises(InvalidRequestException, match="raydog/missing"):
            backend.create_pool(handle.cluster_id, _launch("refused-head", "raydog/missing"), 1)
    finally:
        assert backend.shut_down(handle.cluster_id) == []
        backend.close()
