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
def yd_kwargs(yellowdog_emulator: Emulator, raydog_home: Any) -> dict[str, Any]:
    """Keyword arguments of a RayDogCluster on the emulator, in upstream RayDog's names."""
    return {
        "backend": "yellowdog",
        **yellowdog_emulator.cluster_kwargs(),
        "cluster_namespace": "raydog-test",
        "head_node_compute_requirement_template_id": TEMPLATE,
    }
