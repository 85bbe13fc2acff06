"""Helpers of the Prefect fault-matrix tests: one cluster config per backend, stand-in node scripts and
node-killing fault injection (imported by module name: the test directory is on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

from raydog_core.spec import NodeResources
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator
from raydog_core.testing.faults import FAILING_SCRIPT, LISTEN_SCRIPT, SLEEP_SCRIPT, kill_node  # noqa: F401 - re-exported
from raydog_prefect import RayDogClusterConfig, YellowDogCredentials
from tests.fault_matrix import fault_cells

BACKENDS = ("local", "yellowdog")
TEMPLATE = DEFAULT_TEMPLATES[0]
SMALL_NODE = NodeResources(num_cpus=1, memory_mb=512, object_store_mb=80)


def backend_cells(fault: str, *, ray: bool = False, backends: tuple[str, ...] = BACKENDS) -> list[Any]:
    """One pytest.param per backend, marked as the (prefect, backend, fault) cell it proves."""
    return fault_cells("prefect", fault, ray=ray, backends=backends)


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
        return self.emulator.environment()  # YD_API_* and the node placement

    def kill_node(self, backend: Any, cluster_id: str, node_id: str) -> None:
        """Fault injection: the machine of this node dies at once (no script, no trap, no Ray drain)."""
        kill_node(cluster_id, node_id, local=backend, emulator=self.emulator)
