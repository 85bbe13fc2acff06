"""Helpers of the Prefect fault-matrix tests: one cluster config per backend, stand-in node scripts and
node-killing fault injection (imported by module name: the test directory is on sys.path)."""

from __future__ import annotations

import json
import signal
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from raydog_core import processes
from raydog_core.backends.local.backend import MANIFEST, LocalBackend
from raydog_core.spec import NodeResources
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator
from raydog_prefect import RayDogClusterConfig, YellowDogCredentials

BACKENDS = ("local", "yellowdog")
TEMPLATE = DEFAULT_TEMPLATES[0]
SMALL_NODE = NodeResources(num_cpus=1, memory_mb=512, object_store_mb=80)

# Stand-in node scripts for faults that happen before Ray would run (they start no Ray at all).
FAILING_SCRIPT = "#!/usr/bin/env bash\necho 'node script: cannot start (on purpose)' >&2\nexit 3\n"
SLEEP_SCRIPT = "#!/usr/bin/env bash\nexec sleep 600\n"
# A head that only accepts connections on its GCS port: enough for the builder to start the workers.
LISTEN_SCRIPT = '#!/usr/bin/env bash\nexec python -m http.server "$RAYDOG_GCS_PORT" --bind 127.0.0.1\n'


def backend_cells(fault: str, *, ray: bool = False, backends: tuple[str, ...] = BACKENDS) -> list[Any]:
    """One pytest.param per backend, marked as the (prefect, backend, fault) cell it proves."""
    marks: list[Any] = [pytest.mark.slow] if ray else []
    return [
        pytest.param(backend, marks=[pytest.mark.fault_case("prefect", backend, fault), *marks], id=backend)
        for backend in backends
    ]


@dataclass
class Target:
    """Where a test's cluster runs: the local backend, or YellowDog through the emulator."""

    backend: str
    emulator: Emulator | None = None

    def config(self, cluster_name: str, workers: int = 0, **fields: Any) -> RayDogClusterConfig:
        """A cluster config of small nodes on this target; `fields` are RayDogClusterConfig fields."""
        pool = {"worker_pool_node_count": workers, "worker_node_resources": SMALL_NODE}
        pool.update(fields.pop("worker_pool", {}))
        values: dict[str, Any] = {
            "cluster_name": cluster_name,
            "head_node_resources": SMALL_NODE,
            "worker_pools": [pool] if workers else [],
            "ray_connection": "direct",
        }
        if self.emulator is not None:
            pool["worker_node_compute_requirement_template_id"] = TEMPLATE
            values.update(
                backend="yellowdog",
                head_node_compute_requirement_template_id=TEMPLATE,
                yellowdog_credentials=self.credentials(),
            )
        values.update(fields)
        return RayDogClusterConfig(**values)

    def credentials(self) -> YellowDogCredentials:
        assert self.emulator is not None
        return YellowDogCredentials(
            application_key_id=self.emulator.key_id,
            application_key_secret=SecretStr(self.emulator.key_secret),
            platform_api_url=self.emulator.url,
        )

    def environment(self) -> dict[str, str]:
        """What a flow process needs to reach this target without a credentials Block (YD_API_*)."""
        if self.emulator is None:
            return {}
        return {
            "YD_API_KEY_ID": self.emulator.key_id,
            "YD_API_KEY_SECRET": self.emulator.key_secret,
            "YD_API_URL": self.emulator.url,
        }

    def kill_node(self, backend: Any, cluster_id: str, node_id: str) -> None:
        """Fault injection: the machine of this node dies at once (no script, no trap, no Ray drain)."""
        if self.emulator is not None:
            self.emulator.kill_instance_of_task(node_id)
        else:
            kill_local_node(backend, cluster_id, node_id)


def kill_local_node(backend: LocalBackend, cluster_id: str, node_id: str) -> None:
    """SIGKILL every process of one local node's session, the one the backend recorded starting
    (checked by PID and start time, so nothing else is touched)."""
    manifest = json.loads((backend.root / cluster_id / MANIFEST).read_text())
    ref = processes.ProcessRef.from_dict(manifest["nodes"][node_id]["process"])
    members = processes.session_members([ref])
    assert members, f"node {node_id} has no live process to kill"
    for proc in members:
        proc.send_signal(signal.SIGKILL)  # psutil re-checks the PID's start time before signalling
