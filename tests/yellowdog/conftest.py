"""Shared helpers for the YellowDog backend tests (the `yellowdog_emulator` fixture comes from the raydog
pytest plugin and fails the module if anything is left alive on the emulator)."""

from __future__ import annotations

from typing import Any

import pytest

from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator

TEMPLATE = DEFAULT_TEMPLATES[0]
SLEEP_SCRIPT = "#!/usr/bin/env bash\nexec sleep 600\n"
# A stand-in head without Ray (for tests of the platform side): it only accepts connections on the GCS port.
LISTEN_SCRIPT = '#!/usr/bin/env bash\nexec python -m http.server "$RAYDOG_GCS_PORT" --bind 127.0.0.1\n'
FAILING_SCRIPT = "#!/usr/bin/env bash\necho 'head: cannot start' >&2\nexit 3\n"


@pytest.fixture
def quick_stand_in_head(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in head (no Ray, so no dashboard) is trusted after 1 s of listening instead of 10 s. Only
    for modules without a real Ray head, whose dashboard comes up seconds after its GCS."""
    from raydog_core import lifecycle

    monkeypatch.setattr(lifecycle, "HEAD_WITHOUT_DASHBOARD_S", 1.0)


@pytest.fixture
def yd_kwargs(yellowdog_emulator: Emulator, raydog_home: Any) -> dict[str, Any]:
    """Keyword arguments of a RayDogCluster on the emulator, in upstream RayDog's names."""
    return {
        "backend": "yellowdog",
        **yellowdog_emulator.cluster_kwargs(),
        "cluster_namespace": "raydog-test",
        "head_node_compute_requirement_template_id": TEMPLATE,
    }


def stand_in_cluster(yd_kwargs: dict[str, Any], name: str, workers: int) -> Any:
    """An unbuilt cluster of stand-in nodes (a head that only listens, workers that sleep): for tests
    of the platform side, where Ray itself is not under test."""
    from raydog_core import RayDogCluster

    cluster = RayDogCluster(cluster_name=name, head_node_ray_start_script=LISTEN_SCRIPT, **yd_kwargs)
    cluster.add_worker_pool(
        worker_pool_node_count=workers,
        worker_node_task_script=SLEEP_SCRIPT,
        worker_node_compute_requirement_template_id=TEMPLATE,
    )
    return cluster
