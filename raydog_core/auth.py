"""Ray token authentication: one token per cluster, handed to nodes and clients, never logged or saved
in state. The client keeps a copy in a 0600 file under $RAYDOG_HOME so another process of the same user
(a proxy, `raydog status`, an Airflow task) can connect too."""

from __future__ import annotations

import os
import secrets

from raydog_core.cluster_secrets import ClusterSecrets

TOKEN_ENV_VAR = "RAYDOG_RAY_AUTH_TOKEN"


def new_token() -> str:
    return secrets.token_hex(32)


def shared_token() -> str | None:
    """$RAYDOG_RAY_AUTH_TOKEN: a token kept in a secrets manager and given to every machine that builds or
    attaches to clusters (a warm cluster built elsewhere is reached with it)."""
    return os.environ.get(TOKEN_ENV_VAR, "").strip() or None


def cluster_token() -> str:
    """The token for a new cluster: the shared one if set, else a fresh random one."""
    return shared_token() or new_token()


TOKENS = ClusterSecrets("tokens")
token_path = TOKENS.path
save_token = TOKENS.save
load_token = TOKENS.load
delete_token = TOKENS.delete


def token_for(cluster_id: str) -> str | None:
    """The cluster's token as this machine knows it: its 0600 file (written where the cluster was built
    or attached to), else the shared token, which every cluster built where it is set uses. So a task on
    another machine (an Airflow worker that did not build the cluster) reaches the cluster with the
    shared token. It only ever goes to a head the backend vouches for; a wrong one is refused there."""
    return load_token(cluster_id) or shared_token()


def client_environment(cluster_id: str, auth_mode: str) -> dict[str, str]:
    """Environment a Ray client (driver, job client, `ray status`) needs to reach this cluster."""
    if auth_mode != "token":
        return {"RAY_AUTH_MODE": "disabled"}
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path(cluster_id))}
