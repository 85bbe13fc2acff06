"""Backends: where nodes live. `create_backend` is the one place that chooses one."""

from __future__ import annotations

from raydog_core.backends.base import Backend, NodeInfo, NodeLaunch, NodeRole, NodeStatus
from raydog_core.credentials import YellowDogCredentials
from raydog_core.spec import NodePlacement

__all__ = ["Backend", "NodeInfo", "NodeLaunch", "NodePlacement", "NodeRole", "NodeStatus", "create_backend"]


def create_backend(
    kind: str,
    credentials: YellowDogCredentials | None = None,
    *,
    placement: NodePlacement | str | None = None,
) -> Backend:
    """A backend of this kind; YellowDog needs credentials (see YellowDogCredentials.resolve) and takes a
    node placement (None: $RAYDOG_YELLOWDOG_NODE_PLACEMENT, else own_machine; see NodePlacement)."""
    if kind == "local":
        from raydog_core.backends.local.backend import LocalBackend

        return LocalBackend()
    if kind == "yellowdog":
        from raydog_core.backends.yellowdog.backend import YellowDogBackend

        return YellowDogBackend(credentials or YellowDogCredentials.resolve(), placement=placement)
    raise ValueError(f"unknown backend {kind!r}: use 'local' or 'yellowdog'")
