"""Backends: where nodes live. `create_backend` is the one place that chooses one."""

from __future__ import annotations

from raydog_core.backends.base import Backend, NodeInfo, NodeLaunch, NodeRole, NodeStatus
from raydog_core.credentials import YellowDogCredentials

__all__ = ["Backend", "NodeInfo", "NodeLaunch", "NodeRole", "NodeStatus", "create_backend"]


def create_backend(kind: str, credentials: YellowDogCredentials | None = None) -> Backend:
    """A backend of this kind; YellowDog needs credentials (see YellowDogCredentials.resolve)."""
    if kind == "local":
        from raydog_core.backends.local.backend import LocalBackend

        return LocalBackend()
    if kind == "yellowdog":
        from raydog_core.backends.yellowdog.backend import YellowDogBackend

        return YellowDogBackend(credentials or YellowDogCredentials.resolve())
    raise ValueError(f"unknown backend {kind!r}: use 'local' or 'yellowdog'")
