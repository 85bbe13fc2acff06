"""RayDog's Airflow 3 provider: the `raydog` connection, operators, triggers and a failure callback.

Import operators from `raydog_airflow.operators`; see docs/airflow.md.
"""

from raydog_airflow.get_provider_info import get_provider_info

__all__ = ["get_provider_info"]
