"""The RayDog operators; the cluster state travels between them in XCom."""

from raydog_airflow.operators.cluster import (
    RayDogAddWorkerPoolOperator,
    RayDogBuildOperator,
    RayDogRemoveWorkerPoolOperator,
    RayDogShutdownOperator,
)
from raydog_airflow.operators.job import RayDogJobFailedError, RayDogSubmitJobOperator

__all__ = [
    "RayDogAddWorkerPoolOperator",
    "RayDogBuildOperator",
    "RayDogJobFailedError",
    "RayDogRemoveWorkerPoolOperator",
    "RayDogShutdownOperator",
    "RayDogSubmitJobOperator",
]
