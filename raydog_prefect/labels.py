"""The labels that tie a cluster to the Prefect flow run it serves.

Keys follow YellowDog's naming rules (lower-case letters, digits, '-' and '_'), so the same labels work
on every backend and can be used as cloud tags.
"""

from __future__ import annotations

from uuid import UUID

ORCHESTRATOR_LABEL = "orchestrator"
ORCHESTRATOR = "prefect"
FLOW_RUN_LABEL = "prefect-flow-run-id"


def flow_run_labels(flow_run_id: UUID | str) -> dict[str, str]:
    """Labels of the cluster of one flow run: what the crash hooks and `raydog reap --label` select by."""
    return {ORCHESTRATOR_LABEL: ORCHESTRATOR, FLOW_RUN_LABEL: str(flow_run_id)}
