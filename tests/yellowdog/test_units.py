"""Unit tests of the YellowDog backend's small pieces (no server)."""

from __future__ import annotations

import pytest
from yellowdog_client.model import Task, TaskError, TaskStatus

from raydog_core import naming
from raydog_core.backends.base import NodeStatus
from raydog_core.backends.yellowdog.labels import labels_tag, parse_labels_tag
from raydog_core.backends.yellowdog.node_status import node_status
from raydog_core.backends.yellowdog.placement import PLACEMENT_ENV, resolve_placement
from raydog_core.errors import SpecError
from raydog_core.spec import ClusterSpec, NodePlacement, build_model


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


def test_placement_is_chosen_never_guessed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PLACEMENT_ENV, raising=False)
    assert resolve_placement() == NodePlacement.OWN_MACHINE  # even for a platform URL on loopback
    monkeypatch.setenv(PLACEMENT_ENV, "shared_host")
    assert resolve_placement() == NodePlacement.SHARED_HOST
    assert resolve_placement("own_machine") == NodePlacement.OWN_MACHINE  # the caller's choice wins
    monkeypatch.setenv(PLACEMENT_ENV, "same_box")
    with pytest.raises(SpecError, match=PLACEMENT_ENV):
        resolve_placement()


def test_spec_takes_a_placement_for_yellowdog_only() -> None:
    yd = {"cluster_name": "c", "backend": "yellowdog", "head_node_compute_requirement_template_id": "ns/t"}
    assert ClusterSpec(**yd, node_placement="shared_host").node_placement == NodePlacement.SHARED_HOST
    assert ClusterSpec(**yd).node_placement is None
    with pytest.raises(SpecError, match="node_placement"):
        build_model(ClusterSpec, {"cluster_name": "c", "node_placement": "shared_host"})
