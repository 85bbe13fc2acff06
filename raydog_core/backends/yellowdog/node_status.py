"""A YellowDog task's status, as the status of the Ray node it runs."""

from __future__ import annotations

from yellowdog_client.model import Task, TaskError, TaskStatus

from raydog_core.backends.base import NodeStatus

_RUNNING = {TaskStatus.EXECUTING, TaskStatus.UPLOADING}
_STOPPED_ON_REQUEST = {TaskStatus.CANCELLED, TaskStatus.ABORTED, TaskStatus.DISCARDED, TaskStatus.RESUBMITTED}


def node_status(task: Task) -> tuple[NodeStatus, str]:
    """(status, detail): why a node is not running, in words a user can act on."""
    status = task.status
    if status is None or not status.finished:
        return (NodeStatus.RUNNING if status in _RUNNING else NodeStatus.PENDING), _restarted(task)
    if status in _STOPPED_ON_REQUEST:
        return NodeStatus.TERMINATED, f"task {status.value.lower()}"
    error = _last_error(task)
    if status == TaskStatus.FAILED and error is not None and error.errorType == "TIMED_OUT":
        return NodeStatus.TERMINATED, "the cluster lifetime (task timeout) was reached"
    if status == TaskStatus.COMPLETED:
        return (
            NodeStatus.FAILED,
            "its script exited with code 0: node scripts must run `ray start ... --block`",
        )
    if error is None:
        return NodeStatus.FAILED, "its task failed"
    detail = f"its task failed: {error.error}"
    if error.processExitCode is not None:
        detail += f" (exit code {error.processExitCode})"
    if error.errorType and error.errorType not in detail:
        detail += f" [{error.errorType}]"
    return NodeStatus.FAILED, detail


def machine_lost(task: Task) -> bool:
    """The task's machine went away under it (the platform ended it: a reclaim, a cap, a crash)."""
    return task.status == TaskStatus.FAILED and any(
        e.errorType == "ALLOCATION_LOST" for e in task.errors or []
    )


def _last_error(task: Task) -> TaskError | None:
    return task.errors[-1] if task.errors else None


def _restarted(task: Task) -> str:
    """Why a node that is running (or waiting) again was started again, if it was."""
    error = _last_error(task)
    if not task.retryCount or error is None:
        return ""
    return f"started again ({task.retryCount}x) after its machine was lost: {error.errorType}"
