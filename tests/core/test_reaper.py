"""`reap` selects exactly the clusters its selector names, on both backends, and a dry run changes nothing.

The clusters here are real backend resources (local process sessions; emulated YellowDog work
requirements, pools and instances running processes) whose nodes run `sleep`: the reaper acts on
backends, so Ray itself is not needed to prove what it selects and stops.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta

import pytest

from raydog_core import postmortem
from raydog_core.backends import Backend, NodeLaunch, NodeRole
from raydog_core.backends.base import ClusterOptions
from raydog_core.reaper import Selector, reap, select_clusters, shut_down_labelled
from raydog_core.spec import YellowDogNodeOptions
from raydog_core.testing.emulator import DEFAULT_TEMPLATES

SLEEP = "#!/usr/bin/env bash\nexec sleep 600\n"


@pytest.fixture(params=["local", "yellowdog"])
def backend(request: pytest.FixtureRequest, raydog_home) -> Iterator[Backend]:
    if request.param == "local":
        from raydog_core.backends.local.backend import LocalBackend

        chosen = LocalBackend(raydog_home / "local")
        yield chosen
        assert chosen.live_resources() == []
    else:
        from raydog_core.backends.yellowdog.backend import YellowDogBackend

        emulator = request.getfixturevalue("yellowdog_emulator")
        chosen = YellowDogBackend(emulator.credentials())
        yield chosen
        chosen.close()
        assert emulator.wait_until_clean() == []


def make_cluster(backend: Backend, name: str, labels: dict[str, str]) -> str:
    handle = backend.open_cluster(ClusterOptions(name=name, namespace="reaper-test", labels=labels))
    launch = NodeLaunch(
        role=NodeRole.HEAD,
        pool_name=f"{name}-head",
        script=SLEEP,
        env={},
        yellowdog=YellowDogNodeOptions(compute_requirement_template_id=DEFAULT_TEMPLATES[0]),
    )
    backend.create_pool(handle.cluster_id, launch, 1)
    return handle.cluster_id


def running_ids(backend: Backend) -> set[str]:
    return {r.cluster_id for r in backend.list_clusters() if r.state == "running"}


def test_reap_selects_exactly_the_matching_clusters(backend: Backend) -> None:
    tag = secrets.token_hex(2)
    a = make_cluster(backend, f"reap-a{tag}", {"run": f"r1{tag}", "team": "x"})
    b = make_cluster(backend, f"reap-b{tag}", {"run": f"r2{tag}", "team": "x"})
    c = make_cluster(backend, f"reap-c{tag}", {"run": f"r1{tag}", "team": "y"})
    assert {a, b, c} <= running_ids(backend)

    assert {r.cluster_id for r in select_clusters(backend, Selector(labels={"run": f"r1{tag}"}))} == {a, c}
    dry = reap(backend, Selector(labels={"run": f"r1{tag}"}), dry_run=True)
    assert {r.cluster.cluster_id for r in dry} == {a, c} and not any(r.shut_down for r in dry)
    assert {a, b, c} <= running_ids(backend)  # the dry run changed nothing

    assert reap(backend, Selector()) == []  # an empty selector matches nothing
    assert reap(backend, Selector(labels={"run": f"r1{tag}"}, older_than=timedelta(hours=1))) == []

    done = reap(backend, Selector(labels={"run": f"r1{tag}", "team": "x"}))
    assert [r.cluster.cluster_id for r in done] == [a] and done[0].failures == []
    assert a not in running_ids(backend) and {b, c} <= running_ids(backend)

    assert [r.cluster.cluster_id for r in shut_down_labelled(backend, {"run": f"r1{tag}"})] == [c]
    assert shut_down_labelled(backend, {"run": f"r1{tag}"}) == []  # idempotent: nothing left to do
    assert [r.cluster.cluster_id for r in reap(backend, Selector(name=f"reap-b{tag}"))] == [b]
    assert not {a, b, c} & running_ids(backend)
    bundles = [postmortem.find(cluster_id) for cluster_id in (a, b, c)]
    assert all(bundle is not None and "- ended: reaped (" in bundle.summary for bundle in bundles), bundles


def test_a_listing_finishes_a_shut_down_that_was_cut_short(local_backend, fault_leaks) -> None:
    """A shut-down run from inside the cluster (the head's autoscaler ending a `ray up` cluster) stops
    its own process with the nodes, before it removes the temp dir and the secrets: the cluster is
    "stopped" with its files left. The next `raydog list` finishes it; the logs stay."""
    from raydog_core import RayDogCluster, auth, processes
    from raydog_core.reaper import list_and_tidy

    cluster = RayDogCluster(
        cluster_name="cutshort", head_node_ray_start_script="#!/bin/bash\nexec sleep 600\n"
    )
    cluster.build(wait_for_head=False)
    cluster_id = cluster.cluster_id
    directory = local_backend.root / cluster_id
    with local_backend._manifest(directory) as manifest:  # what the cut-short shut-down got to do
        for node in manifest.nodes.values():
            node.stop()
        manifest.state = "stopped"
        refs, temp_dir = [n.process for n in manifest.nodes.values()], manifest.temp_dir
    assert processes.stop_sessions(refs) == []
    assert temp_dir.is_dir() and cluster_id in auth.TOKENS.cluster_ids()
    assert fault_leaks.count(wait_s=0).files  # the files a stopped cluster must not keep

    (record,) = [r for r in list_and_tidy(local_backend) if r.cluster_id == cluster_id]
    assert record.state == "stopped"
    assert not temp_dir.exists() and cluster_id not in auth.TOKENS.cluster_ids()
    assert (directory / "logs").is_dir()
    fault_leaks.counts.clear()  # the count above was the fault under test, not a leak of the test
    fault_leaks.assert_none(wait_s=0)
    cluster.shut_down()  # a second shut-down finds nothing to do
