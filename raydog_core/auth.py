"""Ray token authentication: one token per cluster, handed to nodes and clients, never logged or saved
in state. The client keeps a copy in a 0600 file under $RAYDOG_HOME so another process of the same user
(a proxy, `raydog status`, an Airflow task) can connect too."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from raydog_core.errors import StateError
from raydog_core.home import raydog_home

TOKEN_ENV_VAR = "RAYDOG_RAY_AUTH_TOKEN"
_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


def new_token() -> str:
    return secrets.token_hex(32)


def cluster_token() -> str:
    """The token for a new cluster: $RAYDOG_RAY_AUTH_TOKEN if set (a token kept in a secrets manager and
    shared with other clients), else a fresh random one."""
    return os.environ.get(TOKEN_ENV_VAR, "").strip() or new_token()


def token_path(cluster_id: str) -> Path:
    """The token file of a cluster: always directly under $RAYDOG_HOME/tokens, whatever the id says."""
    name = cluster_id.replace(":", "_")
    if not _PLAIN_ID.fullmatch(name):
        raise StateError(f"cluster id {cluster_id!r} is not a plain identifier")
    return raydog_home() / "tokens" / name


def save_token(cluster_id: str, token: str) -> Path:
    path = token_path(cluster_id)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token)
    return path


def load_token(cluster_id: str) -> str | None:
    try:
        return token_path(cluster_id).read_text().strip() or None
    except OSError:
        return None


def delete_token(cluster_id: str) -> None:
    token_path(cluster_id).unlink(missing_ok=True)


def client_environment(cluster_id: str, auth_mode: str) -> dict[str, str]:
    """Environment a Ray client (driver, job client, `ray status`) needs to reach this cluster."""
    if auth_mode != "token":
        return {"RAY_AUTH_MODE": "disabled"}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path(cluster_id))}
