"""Warm clusters in tests: find the live ones of a reuse key, and shut them down after a test module."""

from __future__ import annotations

from raydog_core import reuse
from raydog_core.backends.base import Backend, ClusterRecord
from raydog_core.reaper import shut_down_labelled


def warm_clusters(backend: Backend, reuse_key: str) -> list[ClusterRecord]:
    """The running warm clusters of `reuse_key` (any spec) on this backend."""
    return [
        record
        for record in backend.list_clusters()
        if record.state == "running" and record.labels.get(reuse.REUSE_LABEL, "").startswith(f"{reuse_key}.")
    ]


def shut_down_warm(backend: Backend, reuse_key: str) -> None:
    """Shut down every running warm cluster of `reuse_key`, as its users never do."""
    for record in warm_clusters(backend, reuse_key):
        shut_down_labelled(backend, {reuse.REUSE_LABEL: record.labels[reuse.REUSE_LABEL]})
