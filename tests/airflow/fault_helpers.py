"""Helpers of the Airflow fault-matrix tests: a `raydog` connection and a spec per backend, stand-in
node scripts and node-killing fault injection (imported by module name: the test directory is on
sys.path)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from typing import Any

from conftest import DAGS_FOLDER

from raydog_core.backends import Backend, create_backend
from raydog_core.testing.emulator import DEFAULT_TEMPLATES, Emulator
from raydog_core.testing.faults import FAILING_SCRIPT, LISTEN_SCRIPT, SLEEP_SCRIPT, kill_node  # noqa: F401 - re-exported
from tests.fault_matrix import fault_cells

BACKENDS = ("local", "yellowdog")
TEMPLATE = DEFAULT_TEMPLATES[0]
SMALL_NODE = {"num_cpus": 1, "memory_mb": 512, "object_store_mb": 80}


def backend_cells(fault: str, *, ray: bool = False, backends: tuple[str, ...] = BACKENDS) -> list[Any]:
    """One pytest.param per backend, marked as the (airflow, backend, fault) cell it proves."""
    return fault_cells("airflow", fault, ray=ray, backends=backends)


def load_backend_dag(file_stem: str, backend: str) -> Any:
    """The DAG `dag_<backend>` of `<file_stem>.py` in the DAGs folder."""
    spec = importlib.util.spec_from_file_location(f"dags_{file_stem}", DAGS_FOLDER / f"{file_stem}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, f"dag_{backend}")


@dataclass
class Target:
    """Where a test's cluster runs: the local backend, or YellowDog through the emulator."""

    backend: str
    emulator: Emulator | None = None

    @property
    def conn_id(self) -> str:
        return f"raydog_fault_{self.backend}"

    def connection(self) -> dict[str, Any]:
        """The `raydog` connection in Airflow's JSON form (for an AIRFLOW_CONN_... variable)."""
        if self.emulator is None:
            return {"conn_type": "raydog", "extra": {"backend": "local"}}
        return {
            "conn_type": "raydog",
            "host": self.emulator.url,
            "login": self.emulator.key_id,
            "password": self.emulator.key_secret,
            "extra": {"backend": "yellowdog", "namespace": "raydog-faults"},
        }

    def connection_environment(self) -> dict[str, str]:
        return {f"AIRFLOW_CONN_{self.conn_id.upper()}": json.dumps(self.connection())}

    def spec(
        self, cluster_name: str, workers: int = 0, worker_pool: dict | None = None, **fields: Any
    ) -> dict:
        """A spec of small nodes on this target (the connection decides the backend)."""
        pool = {"worker_pool_node_count": workers, "worker_node_resources": SMALL_NODE, **(worker_pool or {})}
        spec: dict[str, Any] = {
            "cluster_name": cluster_name,
            "head_node_resources": SMALL_NODE,
            "worker_pools": [pool] if workers else [],
        }
        if self.emulator is not None:
            pool["worker_node_compute_requirement_template_id"] = TEMPLATE
            spec["head_node_compute_requirement_template_id"] = TEMPLATE
        return {**spec, **fields}

    def open_backend(self) -> Backend:
        return create_backend(self.backend, self.emulator.credentials() if self.emulator else None)

    def kill_node(self, backend: Backend, cluster_id: str, node_id: str) -> None:
        """Fault injection: the machine of this node dies at once (no script, no trap, no Ray drain)."""
        kill_node(cluster_id, node_id, local=backend, emulator=self.emulator)


def running_cluster(backend: Backend, cluster_name: str) -> Any:
    """The running cluster of that name, or None."""
    records = [c for c in backend.list_clusters() if c.name == cluster_name and c.state == "running"]
    return records[0] if records else None
