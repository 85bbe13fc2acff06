"""Shutting a flow run's cluster down safely: never raising over the flow's own error, not cut short
by a second Ctrl+C, and saying so when a crash hook or the reaper got there first."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from raydog_core.backends.base import NodeStatus
from raydog_core.cluster import RayDogCluster

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then deliver the first one that arrived.

    A teardown interrupted half-way leaves nodes running; waiting a few seconds is the better deal.
    Only the main thread can set signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous: dict[int, Any] = {}
    for number in DEFERRED_SIGNALS:
        handler = signal.getsignal(number)
        if handler is None:  # installed outside Python: leave it alone
            continue
        previous[number] = handler
        signal.signal(number, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if received:
            signal.raise_signal(received[0])


def still_running(cluster: RayDogCluster) -> bool:
    """Whether any node of the cluster still runs (True when the backend cannot tell)."""
    try:
        return any(node.status == NodeStatus.RUNNING for node in cluster.nodes())
    except Exception:  # noqa: BLE001 - unknown means: shut it down to be sure
        return True


def tear_down(cluster: RayDogCluster, logger: logging.Logger | logging.LoggerAdapter) -> None:
    """Shut the cluster down; failures are logged, never raised (the flow's own outcome wins)."""
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
            cluster.shut_down()  # idempotent; also releases the client side (token file, connections)
        except Exception:
            logger.exception(
                "Shutting down RayDog cluster %s failed; `raydog reap --label` can remove what is left", name
            )
