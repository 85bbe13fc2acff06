"""The wording of "why isn't it scaling?" (the watch itself runs against real Ray in
test_local_cluster.py): booting nodes are told apart from nodes the platform cannot place."""

from __future__ import annotations

from raydog_core.backends.base import NodeEnd, NodeInfo, NodeRole, NodeStatus
from raydog_core.demand_watch import UnmetDemand, explain


def _worker(node_id: str, blocked_by: str = "") -> NodeInfo:
    return NodeInfo(node_id, "pool", NodeRole.WORKER, NodeStatus.PENDING, blocked_by=blocked_by)


def test_booting_nodes_say_for_how_long_and_unplaceable_ones_say_why() -> None:
    demand = UnmetDemand({"CPU": 4.0}, 2)
    no_capacity = "the platform has no capacity for pool big-w1: InsufficientInstanceCapacity in eu-west-2"
    text = explain(
        "etl",
        demand,
        [{"CPU": 1.0}],
        [_worker("big-w1-a"), _worker("big-w1-b", no_capacity), _worker("big-w1-c", no_capacity)],
        {"big-w1-a": 42.4},
    )
    assert "2 Ray task(s)/actor(s) wait for CPU 4, which no node of the cluster offers" in text
    assert "(its nodes offer: CPU 1)" in text
    assert "1 node(s) still starting (big-w1-a for 42 s)" in text
    assert f"2 node(s) will get no machine: {no_capacity}" in text
    assert text.endswith("or ask for less in the task's resources")


def test_no_nodes_starting_says_nothing_of_them() -> None:
    text = explain("etl", UnmetDemand({"GPU": 1.0}, 1), [], [])
    assert "no node is up" in text and "starting" not in text and "no machine" not in text


def test_failed_nodes_show_their_log_tail_and_capped_ones_the_cap() -> None:
    failed = NodeInfo(
        "etl-w1-x",
        "pool",
        NodeRole.WORKER,
        NodeStatus.FAILED,
        detail="its script exited with code 1; last lines of its log:\nline 1\nImportError: no module named foo",
    )
    capped = NodeInfo(
        "etl-w1-y", "pool", NodeRole.WORKER, NodeStatus.FAILED, detail="lost", ended_by=NodeEnd.SPEND_CAP
    )
    text = explain("etl", UnmetDemand({"CPU": 1.0}, 3), [], [], failed=[failed, capped])
    assert "the spend cap ended 1 node(s) (etl-w1-y)" in text
    assert "1 node(s) failed, etl-w1-x: " in text and "ImportError: no module named foo" in text
