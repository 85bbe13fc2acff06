"""Warm reuse in Prefect: flow runs with one reuse key share a cluster, each in its own Ray namespace,
and one log forwarder; the runner leaves it (never shuts it down), crash hooks leave it alone, and it
ends by itself once idle."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
import ray
from prefect import flow, get_run_logger, task
from prefect_helpers import flow_run_logs

from raydog_core import RayDogCluster, reuse, warm_files
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.reaper import shut_down_labelled
from raydog_core.spec import NodeResources
from raydog_core.testing.leaks import count_leaks
from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner, flow_run_cluster, shut_down_flow_run_cluster
from raydog_prefect.task_runner import WORKER_MODULES

pytestmark = pytest.mark.slow

WARM = RayDogClusterConfig(
    cluster_name="prefect-warm",
    worker_pools=[],
    head_node_resources=NodeResources(num_cpus=2),
    idle_ttl=timedelta(minutes=5),
)


@task
def where() -> tuple[str, str]:
    get_run_logger().info("where: on a Ray worker")
    context = ray.get_runtime_context()
    return context.gcs_address, context.namespace


@flow(task_runner=RayDogTaskRunner(cluster=WARM, reuse="nightly"), on_completion=[shut_down_flow_run_cluster])
def nightly() -> tuple[str, str, str, list[str], list[str]]:
    from ray.util.state import list_actors

    cluster = flow_run_cluster()
    assert cluster is not None
    gcs, namespace = where.submit().result()
    alive = [("class_name", "=", "LogForwarder"), ("state", "=", "ALIVE")]
    gcs_address = ray.get_runtime_context().gcs_address  # this cluster's, of the several on the machine
    forwarders = sorted(actor.actor_id for actor in list_actors(address=gcs_address, filters=alive))
    return cluster.cluster_id or "", gcs, namespace, forwarders, cluster.spec.worker_preload_modules


def test_flow_runs_with_one_reuse_key_share_a_warm_cluster(
    backend: LocalBackend, raydog_home, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        _two_runs_share_one_cluster(backend, caplog)
    finally:  # a failed check leaves no warm cluster for the session's final leak check to find
        for record in backend.list_clusters():
            if reuse.REUSE_LABEL in record.labels and record.state == "running":
                shut_down_labelled(backend, {reuse.REUSE_LABEL: record.labels[reuse.REUSE_LABEL]})
    assert count_leaks(raydog_home, wait_s=30).total == 0


def _two_runs_share_one_cluster(backend: LocalBackend, caplog: pytest.LogCaptureFixture) -> None:
    first, second = nightly(return_state=True), nightly(return_state=True)
    (first_id, first_gcs, first_ns, first_fw, preloaded), (second_id, second_gcs, second_ns, second_fw, _) = (
        first.result(),
        second.result(),
    )
    # Its Ray workers import what a Prefect task needs as they start: a ready worker runs a task at once.
    assert preloaded == list(WORKER_MODULES)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert first_id == second_id and first_gcs == second_gcs, (
        "the second run built its own cluster",
        warnings,
    )
    first_run, second_run = first.state_details.flow_run_id, second.state_details.flow_run_id
    assert (first_ns, second_ns) == (f"prefect-{first_run}", f"prefect-{second_run}")
    # One log forwarder serves both runs: the second run started no actor process of its own.
    assert len(first_fw) == 1 and second_fw == first_fw, (first_fw, second_fw)

    first_logs, second_logs = flow_run_logs(first_run), flow_run_logs(second_run)
    assert all(any("where: on a Ray worker" in m for m in logs) for logs in (first_logs, second_logs))
    assert any("Built warm RayDog cluster" in m for m in first_logs), first_logs
    assert any("Attached to warm RayDog cluster" in m for m in second_logs), second_logs
    assert all(any("Left warm RayDog cluster" in m for m in logs) for logs in (first_logs, second_logs))
    # on_completion's crash-and-failure hook finds no cluster of the run: a warm one is not the run's.
    assert any("no running cluster of flow run" in m for m in second_logs), second_logs

    (record,) = [r for r in backend.list_clusters() if r.cluster_id == first_id]
    assert record.state == "running" and "prefect-flow-run-id" not in record.labels
    state = warm_files.saved_state(record.name)
    assert state is not None
    view = RayDogCluster.from_state(state).lease_view()
    assert view["leases"] == [] and view["idle_ttl_s"] == 300, view  # both runs released their lease

    results = shut_down_labelled(backend, {reuse.REUSE_LABEL: record.labels[reuse.REUSE_LABEL]})
    assert [r.cluster.cluster_id for r in results] == [first_id]
