"""The observability password: one per cluster, made on the client and kept like the Ray token.

It is Grafana's admin password and the password of the `raydog` user Prometheus asks for (basic auth:
the head's metrics agent pushes with it, Ray's dashboard and Grafana query with it). Prometheus keeps
only its bcrypt hash, computed here on the client, so a node needs no bcrypt of its own.
"""

from __future__ import annotations

import secrets

import bcrypt

from raydog_core.backends.base import NodeRole
from raydog_core.cluster_secrets import ClusterSecrets

PASSWORDS = ClusterSecrets("observability")
PROMETHEUS_USER = "raydog"
PASSWORD_ENV = "RAYDOG_OBSERVABILITY_PASSWORD"
HASH_ENV = "RAYDOG_PROMETHEUS_PASSWORD_HASH"
# A 256-bit random password needs no slow hash against guessing; a low cost keeps Prometheus' check of
# every push and query cheap.
_BCRYPT_ROUNDS = 10


def cluster_password(cluster_id: str) -> str:
    """The cluster's password, made on first use (0600 file `$RAYDOG_HOME/observability/<cluster id>`)."""
    return PASSWORDS.load_or_create(cluster_id, secrets.token_urlsafe(32))


def password_hash(password: str) -> str:
    """The bcrypt hash Prometheus' web config holds for the `raydog` user."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(_BCRYPT_ROUNDS)).decode()


def node_environment(cluster_id: str, role: NodeRole) -> dict[str, str]:
    """The password for the head (it pushes and queries) and the observability node (which also gets
    the hash for Prometheus); both scripts move it into a private file and out of their environment."""
    password = cluster_password(cluster_id)
    env = {PASSWORD_ENV: password}
    if role == NodeRole.OBSERVABILITY:
        env[HASH_ENV] = password_hash(password)
    return env
