"""Which failures are the infrastructure's (a retry may mend them) and which would fail again."""

from __future__ import annotations

import pytest

from raydog_core.backends.base import NodeEnd, NodeInfo, NodeRole, NodeStatus, node_failure
from raydog_core.errors import (
    BuildTimeoutError,
    InfrastructureError,
    NodeEndedByCapError,
    NodeFailedError,
    NodeLostError,
    SpecError,
    SpendCapError,
    StateError,
)


def _failed(ended_by: NodeEnd | None) -> NodeInfo:
    return NodeInfo("w-1", "pool", NodeRole.WORKER, NodeStatus.FAILED, detail="why", ended_by=ended_by)


@pytest.mark.parametrize(
    ("ended_by", "kind", "infrastructure"),
    [
        (None, NodeFailedError, False),  # its script exited: it would again
        (NodeEnd.MACHINE_LOST, NodeLostError, True),
        (NodeEnd.SPEND_CAP, NodeEndedByCapError, False),
    ],
)
def test_a_failed_node_becomes_the_error_of_who_ended_it(
    ended_by: NodeEnd | None, kind: type, infrastructure: bool
) -> None:
    error = node_failure(_failed(ended_by))
    assert type(error) is kind and isinstance(error, NodeFailedError)
    assert isinstance(error, InfrastructureError) is infrastructure
    assert str(error) == "worker node w-1 failed: why"
    assert isinstance(node_failure(_failed(NodeEnd.SPEND_CAP)), SpendCapError)


def test_only_infrastructure_errors_are_worth_a_retry() -> None:
    assert isinstance(BuildTimeoutError("boot"), InfrastructureError)
    for final in (SpecError("field", "bad"), StateError("stale"), SpendCapError("cap")):
        assert not isinstance(final, InfrastructureError)
