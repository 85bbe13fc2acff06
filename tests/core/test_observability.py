"""The observability node starts before the head, and head and workers get its IP as OBSERVABILITY_HOST
(seed 002), on both backends. A stand-in observability script keeps the test independent of
Prometheus being installed; the default script is checked for its clear error when it is not."""

from __future__ import annotations

import os
import shutil
from typing import Any

import pytest
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raydog_core import RayDogCluster
from raydog_core.backends import NodeRole
from raydog_core.scripts import default_script
from raydog_core.testing.emulator import DEFAULT_TEMPLATES

pytestmark = pytest.mark.slow
OBSERVABILITY = "#!/usr/bin/env bash\necho observability node up\nexec sleep 600\n"


@ray.remote(num_cpus=0)
def observability_host() -> str | None:
    return os.environ.get("OBSERVABILITY_HOST")


def backend_kwargs(kind: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if kind == "local":
        return {}
    emulator = request.getfixturevalue("yellowdog_emulator")
    return {
        "backend": "yellowdog",
        **emulator.cluster_kwargs(),
        "head_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
        "observability_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0],
    }


@pytest.mark.parametrize("kind", ["local", "yellowdog"])
def test_observability_node_first_and_its_ip_everywhere(kind: str, request, raydog_home) -> None:
    worker_template = (
        {"worker_node_compute_requirement_template_id": DEFAULT_TEMPLATES[0]} if kind != "local" else {}
    )
    with RayDogCluster(
        cluster_name=f"obs-{kind[:5]}",
        enable_observability=True,
        observability_node_start_script=OBSERVABILITY,
        **backend_kwargs(kind, request),
    ) as cluster:
        cluster.add_worker_pool(worker_pool_node_count=1, **worker_template)
        cluster.build()
        roles = [pool.role for pool in cluster.state.pools]
        assert roles[0] == "head" and "observability" in roles
        observability = next(n for n in cluster.nodes() if n.role == NodeRole.OBSERVABILITY)
        assert cluster.state.observability_host == observability.private_ip
        ray.init(address=cluster.ray_address)
        try:
            nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
            seen = ray.get(
                [
                    observability_host.options(
                        scheduling_strategy=NodeAffinitySchedulingStrategy(n, soft=False)
                    ).remote()
                    for n in nodes
                ]
            )
        finally:
            ray.shutdown()
        assert len(nodes) == 2 and seen == [observability.private_ip] * 2


@pytest.mark.skipif(
    shutil.which("prometheus") is not None, reason="checks the message shown without Prometheus"
)
def test_default_observability_script_says_what_is_missing(local_backend) -> None:
    cluster = RayDogCluster(cluster_name="obs-default", enable_observability=True)
    assert "prometheus" in default_script("observability")
    with pytest.raises(Exception, match="prometheus is not installed"):
        cluster.build(60)
    assert local_backend.live_resources() == []
