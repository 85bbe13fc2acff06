"""Shutting a flow run's cluster down (or leaving a warm one) safely: never raising over the flow's own error, not cut short
by a second Ctrl+C, and saying so when a crash hook or the reaper got there first."""

from __future__ import annotations

import logging

from raydog_core.backends.base import NodeStatus
from raydog_core.cluster import RayDogCluster
from raydog_core.signals import signals_deferred
from raydog_prefect.post_mortem import attach_post_mortem


def still_running(cluster: RayDogCluster) -> bool:
    """Whether any node of the cluster still runs (True when the backend cannot tell)."""
    try:
        return any(node.status == NodeStatus.RUNNING for node in cluster.nodes())
    except Exception:  # noqa: BLE001 - unknown means: shut it down to be sure
        return True


def tear_down(
    cluster: RayDogCluster, logger: logging.Logger | logging.LoggerAdapter, flow_run_id: str | None = None
) -> None:
    """Shut the cluster down; failures are logged, never raised (the flow's own outcome wins). Its
    post-mortem goes onto the flow run `flow_run_id` names."""
    name = cluster.spec.cluster_name
    with signals_deferred():
        try:
            if cluster.cluster_id is not None and not still_running(cluster):
                logger.info(
                    "RayDog cluster %s (%s) was already shut down (by a crash hook or the reaper): "
                    "nothing left to do",
                    name,
                    cluster.cluster_id,
                )
            else:
                logger.info("Shutting down RayDog cluster %s (%s)", name, cluster.cluster_id)
            usage = cluster.shut_down()  # idempotent; also releases the client side (token file, connections)
            if usage is not None:
                logger.info("RayDog cluster %s used %s", name, usage.describe())
            attach_post_mortem(cluster, flow_run_id, logger)
        except Exception:
            logger.exception(
                "Shutting down RayDog cluster %s failed; `raydog reap --label` can remove what is left", name
            )


def leave(cluster: RayDogCluster, logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Leave a warm cluster to the next run with its reuse key; failures are logged, never raised."""
    with signals_deferred():
        try:
            cluster.leave()
            logger.info(
                "Left warm RayDog cluster %s (%s): the next run with its reuse_key attaches to it; idle, it "
                "ends itself",
                cluster.spec.cluster_name,
                cluster.cluster_id,
            )
        except Exception:
            logger.exception(
                "Leaving RayDog cluster %s failed; its lease lapses by itself", cluster.spec.cluster_name
            )
