"""The one cluster the workload examples share, and the runtime_env that ships this package to it.

Every Prefect flow and Airflow DAG of the examples asks for the same spec with the same `reuse_key`,
so the first one builds the cluster and the next ones attach to it while it is warm (it ends itself
`idle_ttl` after the last run left). Small on purpose: a head and one worker of 1 CPU each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

WORKLOADS_DIR = Path(__file__).resolve().parents[1]  # the directory that holds this package

# The spec's runtime_env: shipped to the cluster for every driver (a Prefect flow run, an Airflow job).
RUNTIME_ENV: dict[str, Any] = {"working_dir": str(WORKLOADS_DIR), "excludes": ["__pycache__/"]}

NODE = {"num_cpus": 1, "memory_mb": 1024, "object_store_mb": 100}
CLUSTER: dict[str, Any] = {
    "cluster_name": "ray-workloads",
    "reuse_key": "ray-workloads",
    "idle_ttl": 300,  # seconds: the warm cluster ends itself 5 minutes after the last run left
    "head_node_resources": NODE,
    "worker_pools": [{"worker_pool_node_count": 1, "worker_node_resources": NODE}],
}
