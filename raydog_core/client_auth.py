"""Point this process's Ray client at one cluster's auth settings, and undo it exactly afterwards.

Ray reads `RAY_AUTH_MODE` into its config once, at import, and caches the token it loaded; a process
that built a cluster needs both pointed at that cluster so `ray.init(address=...)` just works. When
RayDog is done with the cluster the process must be exactly as it was: a later plain `ray.init()` (stock
prefect-ray, a notebook cell, the next test) must not inherit `RAY_AUTH_TOKEN_PATH` of a deleted token.

Scopes stack: clusters can be used one after another or overlapping in one process, and closing one
that is not the newest hands what it saved to the scope above it, so the last one closed restores the
environment from before the first.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Mapping
from types import TracebackType

AUTH_VARIABLES = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN")

_lock = threading.Lock()
_open_scopes: list[ClientAuthScope] = []


class ClientAuthScope:
    """The process's Ray auth variables set to `env` from `open()` until `close()` (idempotent)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        unknown = set(env) - set(AUTH_VARIABLES)
        if unknown:
            raise ValueError(f"not Ray auth variables: {sorted(unknown)}")
        self._env = dict(env)
        self._previous: dict[str, str | None] = {}
        self._open = False

    def open(self) -> ClientAuthScope:
        with _lock:
            if self._open:
                return self
            self._previous = {key: os.environ.get(key) for key in AUTH_VARIABLES}
            _apply(self._env)
            self._open = True
            _open_scopes.append(self)
        _refresh_ray()
        return self

    def close(self) -> None:
        with _lock:
            if not self._open:
                return
            self._open = False
            position = _open_scopes.index(self)
            del _open_scopes[position]
            if position < len(_open_scopes):  # a newer scope is still open: it restores our previous
                _open_scopes[position]._previous = self._previous
                return
            _apply({k: v for k, v in self._previous.items() if v is not None})
        _refresh_ray()

    def __enter__(self) -> ClientAuthScope:
        return self.open()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:  # never the token
        return f"ClientAuthScope(mode={self._env.get('RAY_AUTH_MODE')!r}, open={self._open})"


def any_open() -> bool:
    """Whether RayDog currently has the process's Ray auth settings pointed at one of its clusters."""
    with _lock:
        return bool(_open_scopes)


def _apply(env: Mapping[str, str]) -> None:
    for key in AUTH_VARIABLES:
        os.environ.pop(key, None)
    os.environ.update(env)


def _refresh_ray() -> None:
    """Make an already imported Ray re-read the auth mode and forget its cached token."""
    if "ray" not in sys.modules:
        return
    import ray
    from ray._raylet import AuthenticationTokenLoader  # type: ignore[attr-defined]  # ray/_raylet.pyi omits it

    if not ray.is_initialized():
        ray._config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
