"""What a `raydog` connection says, as plain Python: no Airflow import, so triggers, callbacks and tests
share one reading of it.

| connection field | meaning |
| --- | --- |
| extra `backend` | `local` (default without a key) or `yellowdog` (default with a key) |
| host | YellowDog platform API URL (default https://api.yellowdog.ai) |
| login / password | YellowDog application key id / secret |
| extra `namespace` | YellowDog namespace for clusters whose spec does not name one |
| extra `ssh_user`, `ssh_private_key` or `ssh_private_key_file`, `ssh_port` | SSH to the head, to reach its dashboard through a tunnel |
| extra `ssh_host_key_fingerprint` or `ssh_known_hosts_file` | how to check the head's SSH host key |
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from raydog_core import auth
from raydog_core.backends import Backend, create_backend
from raydog_core.credentials import YellowDogCredentials
from raydog_core.errors import SpecError, StateError
from raydog_core.state import ClusterState

BACKENDS = ("local", "yellowdog")


@dataclass(frozen=True)
class RayDogConnectionSettings:
    """One `raydog` connection, read. Secrets stay in SecretStr: the repr shows none."""

    backend: str = "local"
    credentials: YellowDogCredentials | None = None
    namespace: str | None = None
    ssh_user: str | None = None
    ssh_private_key: SecretStr | None = None
    ssh_private_key_file: str | None = None
    ssh_port: int = 22
    ssh_host_key_fingerprint: str | None = None
    ssh_known_hosts_file: str | None = None

    @classmethod
    def from_fields(
        cls,
        *,
        host: str | None = None,
        login: str | None = None,
        password: str | None = None,
        extra: Mapping[str, Any] | None = None,
        conn_id: str = "raydog",
    ) -> RayDogConnectionSettings:
        """Read the fields of an Airflow Connection (custom fields with or without the old UI prefix)."""
        extra = dict(extra or {})

        def field(name: str) -> Any:
            value = extra.get(name, extra.get(f"extra__raydog__{name}"))
            return None if value in ("", None) else value

        backend = field("backend") or ("yellowdog" if login else "local")
        if backend not in BACKENDS:
            raise SpecError(
                f"connection {conn_id}: backend",
                f"{backend!r} is not a backend",
                "use 'local' or 'yellowdog'",
            )
        credentials = None
        if backend == "yellowdog":
            if not login or not password:
                raise SpecError(
                    f"connection {conn_id}: login/password",
                    "missing",
                    "set the YellowDog application key id as login and its secret as password",
                )
            credentials = YellowDogCredentials.resolve(login, password, host or None)
        port = field("ssh_port")
        try:
            ssh_port = int(port) if port is not None else 22
        except (TypeError, ValueError):
            raise SpecError(f"connection {conn_id}: ssh_port", f"{port!r} is not a port", "e.g. 22") from None
        key = field("ssh_private_key")
        return cls(
            backend=backend,
            credentials=credentials,
            namespace=field("namespace"),
            ssh_user=field("ssh_user"),
            ssh_private_key=SecretStr(key) if key else None,
            ssh_private_key_file=field("ssh_private_key_file"),
            ssh_port=ssh_port,
            ssh_host_key_fingerprint=field("ssh_host_key_fingerprint"),
            ssh_known_hosts_file=field("ssh_known_hosts_file"),
        )

    def create_backend(self) -> Backend:
        return create_backend(self.backend, self.credentials)

    def spec_defaults(self) -> dict[str, Any]:
        """ClusterSpec fields the connection decides unless the spec itself does."""
        defaults: dict[str, Any] = {"backend": self.backend}
        if self.namespace:
            defaults["cluster_namespace"] = self.namespace
        return defaults

    def check_state(self, state: ClusterState) -> None:
        if state.backend != self.backend:
            raise SpecError(
                "raydog_conn_id",
                f"the cluster runs on backend {state.backend!r} but the connection is for {self.backend!r}",
                "use the connection the cluster was built with",
            )

    @contextmanager
    def dashboard_url(self, state: ClusterState) -> Iterator[str]:
        """The head's dashboard (Ray Jobs API) as this machine reaches it: directly, or by SSH tunnel.

        The tunnel is used when the connection names an SSH user and the backend's nodes are not
        directly reachable (YellowDog); it goes to the head's public address.
        """
        if not self.ssh_user or self.backend == "local":
            if not state.dashboard_url:
                raise StateError(f"cluster {state.cluster_name} has no head address yet: it was not built")
            yield state.dashboard_url
            return
        from raydog_core.tunnels import RayTunnels, SSHTunnelSpec

        host = state.head.public_ip or state.head.private_ip
        if not host:
            raise StateError(f"cluster {state.cluster_name} has no head address yet: it was not built")
        with self._private_key_file() as key_file:
            tunnels = RayTunnels(
                host,
                self.ssh_user,
                private_key_file=key_file,
                ray_tunnel_specs=[SSHTunnelSpec(0, state.head.dashboard_port)],
                ssh_port=self.ssh_port,
                known_hosts_file=self.ssh_known_hosts_file,
                host_key_fingerprint=self.ssh_host_key_fingerprint,
            )
            with tunnels:
                yield f"http://127.0.0.1:{tunnels.local_port(state.head.dashboard_port)}"

    @contextmanager
    def _private_key_file(self) -> Iterator[str | None]:
        """The SSH key as a file: the configured path, or the key text in a private temporary file."""
        if self.ssh_private_key is None:
            yield self.ssh_private_key_file
            return
        with tempfile.TemporaryDirectory(prefix="raydog-ssh-") as directory:
            path = Path(directory) / "key"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(self.ssh_private_key.get_secret_value().strip() + "\n")
            yield str(path)


def ray_token(state: ClusterState) -> str | None:
    """The cluster's Ray token, from the 0600 file the build left under $RAYDOG_HOME on this machine."""
    if state.auth_mode != "token":
        return None
    token = auth.load_token(state.cluster_id)
    if token is None:
        raise StateError(
            f"the Ray token of cluster {state.cluster_name} is not on this machine: run every task of the "
            "cluster where it was built, or share $RAYDOG_HOME between the workers (see docs/airflow.md)"
        )
    return token
