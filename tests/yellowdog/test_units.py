"""Unit tests of the YellowDog backend's small pieces (no server)."""

from __future__ import annotations

import pytest
from yellowdog_client.model import Task, TaskError, TaskStatus

from raydog_core import naming
from raydog_core.backends.base import NodeStatus
from raydog_core.backends.yellowdog.client import is_loopback_url
from raydog_core.backends.yellowdog.labels import labels_tag, parse_labels_tag
from raydog_core.backends.yellowdog.node_status import node_status
from raydog_core.errors import SpecError


def test_labels_round_trip_and_foreign_tags_are_ignored() -> None:
    assert parse_labels_tag(labels_tag({"flow-run": "r1", "a": "b"})) == {"flow-run": "r1", "a": "b"}
    assert parse_labels_tag("someone-else") is None and parse_labels_tag(None) is None


def test_derived_names_stay_valid() -> None:
    assert naming.task_group_name("demo", "demo-w3", 2) == "w3-g2"
    assert naming.node_name("head", "abcdef012345") == "head-abcdef"
    assert len(naming.task_group_name("c", "p" * 60, 9)) <= naming.MAX_NAME_LENGTH - 7
    with pytest.raises(SpecError):
        naming.node_name("Bad", "abcdef")


def _task(status: TaskStatus, error_type: str | None = None, code: int | None = None) -> Task:
    task = Task(name="w1-abcdef")
    task.status = status
    if error_type:
        task.errors = [TaskError(timestamp=None, error="boom", errorType=error_type, processExitCode=code)]
    return task


@pytest.mark.parametrize(
    ("status", "error", "code", "expected", "words"),
    [
        (TaskStatus.READY, None, None, NodeStatus.PENDING, ""),
        (TaskStatus.EXECUTING, None, None, NodeStatus.RUNNING, ""),
        (TaskStatus.ABORTED, None, None, NodeStatus.TERMINATED, "aborted"),
        (TaskStatus.FAILED, "TIMED_OUT", None, NodeStatus.TERMINATED, "lifetime"),
        (TaskStatus.FAILED, "PROCESS_NON_ZERO_EXIT", 3, NodeStatus.FAILED, "exit code 3"),
        (TaskStatus.COMPLETED, None, None, NodeStatus.FAILED, "--block"),
    ],
)
def test_task_status_becomes_node_status(status, error, code, expected, words) -> None:
    got, detail = node_status(_task(status, error, code))
    assert got == expected and words in detail


def test_loopback_urls_mean_the_emulator() -> None:
    assert is_loopback_url("http://127.0.0.1:9000") and is_loopback_url("http://localhost:1")
    assert not is_loopback_url("https://api.yellowdog.ai")
