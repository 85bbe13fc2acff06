"""The cluster state in XCom: pushed by the tasks that change a cluster, read by the ones that use it.

Besides its return value, every cluster-changing task pushes the latest state under `STATE_XCOM_KEY`
on each change, starting right after the cluster is opened, so a teardown or failure callback finds
the cluster even when the build died half-way. Only `ClusterState.to_dict()` goes in: no secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raydog_core.errors import StateError
from raydog_core.state import ClusterState

STATE_XCOM_KEY = "raydog_cluster_state"
USAGE_XCOM_KEY = "raydog_cluster_usage"  # pushed by the shut-down operator: what each cluster used
POST_MORTEM_XCOM_KEY = "raydog_post_mortems"  # pushed by the shut-down operator: each cluster's bundle


def push_state(ti: Any, state: ClusterState) -> dict[str, Any]:
    value = state.to_dict()
    ti.xcom_push(key=STATE_XCOM_KEY, value=value)
    return value


def state_argument(value: Any, field: str = "cluster_state") -> ClusterState:
    """The `cluster_state` an operator was given (XComArg result, dict, JSON text), checked."""
    if value is None or value == "":
        raise StateError(
            f"{field} is empty: pass the output of the task that built the cluster, "
            "e.g. cluster_state=build.output (it is empty when that task did not finish)"
        )
    if isinstance(value, ClusterState):
        return value
    if isinstance(value, Mapping):
        return ClusterState.from_json(dict(value))
    if isinstance(value, str) and value.lstrip().startswith("{'"):
        raise StateError(
            f"{field} is a Python repr of a dict, not JSON: a Jinja string such as "
            "'{{ ti.xcom_pull(...) }}' renders the state that way; pass the XComArg instead, "
            "e.g. cluster_state=build.output"
        )
    return ClusterState.from_json(value)


def unique_states(values: Sequence[Any]) -> list[ClusterState]:
    """One state per cluster (the last one seen) from XCom values, skipping empty ones."""
    states: dict[str, ClusterState] = {}
    for value in values:
        if value:
            state = state_argument(value)
            states[state.cluster_id] = state
    return list(states.values())
