"""RayDog: a Ray cluster for exactly as long as an orchestrated workload needs one."""

from raydog_core.cluster import RayDogCluster
from raydog_core.credentials import YellowDogCredentials
from raydog_core.errors import (
    BuildError,
    BuildTimeoutError,
    NodeFailedError,
    RayDogError,
    ShutdownError,
    SpecError,
    StateError,
)
from raydog_core.proxy import RayDogClusterProxy
from raydog_core.spec import ClusterSpec, NodeResources, WorkerPoolSpec
from raydog_core.state import ClusterState

__version__ = "0.1.0"

__all__ = [
    "BuildError",
    "BuildTimeoutError",
    "ClusterSpec",
    "ClusterState",
    "NodeFailedError",
    "NodeResources",
    "RayDogCluster",
    "RayDogClusterProxy",
    "RayDogError",
    "ShutdownError",
    "SpecError",
    "StateError",
    "WorkerPoolSpec",
    "YellowDogCredentials",
]
