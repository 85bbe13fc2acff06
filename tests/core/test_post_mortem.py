"""Post-mortem bundles: written once by whatever ends a cluster, bounded in size, pruned (stand-in
scripts: Ray itself is not under test here; the real Ray logs in a bundle are checked by
test_secrets_never_leak's local build, which also scans the bundle)."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from raydog_core import RayDogCluster, postmortem


def _members(path: Path) -> dict[str, str]:
    with tarfile.open(path) as archive:
        return {
            m.name: archive.extractfile(m).read().decode()  # type: ignore[union-attr]
            for m in archive
            if m.isfile()
        }


def test_a_failed_build_leaves_a_bundle_with_the_failing_nodes_log(local_backend, fault_leaks) -> None:
    cluster = RayDogCluster(
        cluster_name="pmhead", head_node_ray_start_script="#!/bin/bash\necho broken-head-pm >&2\nexit 3\n"
    )
    with pytest.raises(Exception, match="broken-head-pm"):
        cluster.build(30)
    bundle = cluster.post_mortem
    assert bundle is not None and bundle.path.parent == postmortem.directory()
    assert "build failed: NodeFailedError" in bundle.summary
    files = _members(bundle.path)
    nodes = json.loads(files["nodes.json"])
    assert {n["status"] for n in nodes} == {"failed"} and all(n["role"] == "head" for n in nodes), nodes
    # The head failed, was replaced once, and the replacement failed too: both logs are there.
    head_logs = [text for name, text in files.items() if name.startswith("logs/") and name.endswith(".log")]
    assert len(head_logs) == 2 and all("broken-head-pm" in text for text in head_logs)
    assert "backend/cluster.json" in files
    # The timeline: each head started, then ended failed, in order of time.
    timeline = bundle.summary.split("## Timeline (UTC)", 1)[1]
    events = [line.split(" | ")[2].rstrip(" |") for line in timeline.splitlines() if line.startswith("| 20")]
    assert events.count("head started") == 2 and events.count("head ended (failed)") == 2, timeline
    assert events[0] == "head started" and events[-1] == "head ended (failed)"
    assert postmortem.find(cluster.state.cluster_id) == bundle
    fault_leaks.assert_none()


def test_a_bundle_is_written_once_whoever_ends_the_cluster(local_backend, fault_leaks) -> None:
    cluster = RayDogCluster(cluster_name="pmonce", head_node_ray_start_script="#!/bin/bash\nexit 4\n")
    with pytest.raises(Exception, match="code 4"):
        cluster.build(30)
    first = cluster.post_mortem
    assert first is not None
    written = first.path.stat().st_mtime_ns
    from raydog_core.lifecycle import shut_down_cluster

    assert shut_down_cluster(local_backend, cluster.state.cluster_id, reason="shut down again") == []
    assert first.path.stat().st_mtime_ns == written
    assert "shut down again" not in (postmortem.find(cluster.state.cluster_id) or first).summary
    fault_leaks.assert_none()


def test_each_log_is_cut_to_its_tail_and_the_bundle_to_its_budget(tmp_path: Path, monkeypatch) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(b"early line\n" * 50_000 + b"the failure at the end\n")
    small = tmp_path / "small.log"
    small.write_text("fits\n")
    budget = postmortem.LogBudget()
    budget.copy_tail(big, tmp_path / "out" / "big.log")
    budget.copy_tail(small, tmp_path / "out" / "small.log")
    cut = (tmp_path / "out" / "big.log").read_text()
    assert cut.startswith("[... ") and cut.endswith("the failure at the end\n")
    assert len(cut) < postmortem.MAX_FILE_BYTES + 100
    assert (tmp_path / "out" / "small.log").read_text() == "fits\n"
    assert (budget.files, budget.cut, budget.skipped) == (2, 1, 0)

    monkeypatch.setattr(postmortem, "MAX_LOG_BYTES", 10)
    spent = postmortem.LogBudget()
    spent.copy_tail(small, tmp_path / "spent" / "a.log")  # 5 bytes
    spent.copy_tail(big, tmp_path / "spent" / "b.log")  # cut to the 5 left
    spent.copy_tail(small, tmp_path / "spent" / "c.log")  # nothing left
    assert (spent.files, spent.cut, spent.skipped) == (2, 1, 1)
    assert not (tmp_path / "spent" / "c.log").exists()


def test_only_the_newest_bundles_are_kept(tmp_path: Path) -> None:
    import os

    folder = tmp_path
    for age, name in enumerate(["newest", "middle", "oldest"]):
        path = folder / f"{name}{postmortem.SUFFIX}"
        path.write_bytes(b"")
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    postmortem.prune(folder, keep=2)
    assert sorted(p.name for p in folder.glob(f"*{postmortem.SUFFIX}")) == [
        f"middle{postmortem.SUFFIX}",
        f"newest{postmortem.SUFFIX}",
    ]


def test_bundles_are_copied_to_a_store_and_old_ones_deleted_by_age(
    local_backend, fault_leaks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RAYDOG_POST_MORTEM_URL (any fsspec URL; a local one here) gets a copy of every bundle, and
    RAYDOG_POST_MORTEM_MAX_AGE_DAYS deletes bundles older than that there and on this machine."""
    import os
    import time

    store = tmp_path / "store"
    store.mkdir()
    stale = store / f"long-gone{postmortem.SUFFIX}"
    stale_here = postmortem.directory() / f"long-gone-here{postmortem.SUFFIX}"
    postmortem.directory().mkdir(parents=True, exist_ok=True)
    for old in (stale, stale_here):
        old.write_bytes(b"old")
        two_days_ago = time.time() - 2 * 86400
        os.utime(old, (two_days_ago, two_days_ago))
    monkeypatch.setenv("RAYDOG_POST_MORTEM_URL", f"file://{store}")
    monkeypatch.setenv("RAYDOG_POST_MORTEM_MAX_AGE_DAYS", "1")
    cluster = RayDogCluster(cluster_name="pmstore", head_node_ray_start_script="#!/bin/bash\nexit 5\n")
    with pytest.raises(Exception, match="code 5"):
        cluster.build(30)
    bundle = cluster.post_mortem
    assert bundle is not None and bundle.url == f"file://{store}/{bundle.path.name}"
    copy = store / bundle.path.name
    assert copy.read_bytes() == bundle.path.read_bytes()
    assert not stale.exists() and not stale_here.exists()  # older than a day: gone, there and here
    assert postmortem.find(cluster.state.cluster_id) == bundle  # found again, with its copy's URL
    fault_leaks.assert_none()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("RAYDOG_POST_MORTEM_MAX_AGE_DAYS", "a week"),
        ("RAYDOG_POST_MORTEM_MAX_AGE_DAYS", "0"),
        ("RAYDOG_POST_MORTEM_URL", "nosuchprotocol://bucket/raydog"),
    ],
)
def test_unusable_store_settings_are_refused_before_anything_exists(
    local_backend, fault_leaks, monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    from raydog_core.errors import SpecError

    monkeypatch.setenv(variable, value)
    with pytest.raises(SpecError, match=variable):
        RayDogCluster(cluster_name="pmbadstore").build(30)
    assert local_backend.list_clusters() == [] or all(
        c.name != "pmbadstore" for c in local_backend.list_clusters()
    )
    fault_leaks.assert_none()
