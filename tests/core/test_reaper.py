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
