"""ClusterState: the versioned, secret-free JSON that lets another process find and shut down a cluster.

It is what Airflow passes in XCom, what a crashed flow leaves behind for the reaper and what
`raydog down` reads. It holds ids, addresses and ports; never a key, token or password.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from raydog_core.errors import StateError

STATE_VERSION = 1
Phase = Literal["building", "running", "shut_down"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeadState(_Record):
    node_id: str | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    gcs_port: int = 6379
    dashboard_port: int = 8265
    client_port: int = 10001


class ObservabilityState(_Record):
    """Ports of the observability node's services; the node's address is `ClusterState.observability_host`."""

    prometheus_port: int = 9090
    grafana_port: int = 3000


class PoolState(_Record):
    pool_id: str  # the backend's id
    raydog_id: str | None = None  # the id add_worker_pool returned ("<cluster>-w<n>")
    role: Literal["head", "worker", "observability"]
    internal_name: str | None = None
    node_count: int = 0
    node_ids: list[str] = Field(default_factory=list)


class ClusterState(_Record):
    """Everything needed to reconnect to a cluster and to clean it up, and nothing secret."""

    version: int = STATE_VERSION
    backend: Literal["local", "yellowdog"]
    cluster_id: str
    cluster_name: str
    cluster_namespace: str
    cluster_tag: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    phase: Phase = "building"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    api_url: str | None = None  # YellowDog platform URL (not a secret)
    log_dir: str | None = None  # local backend: where node logs are
    auth_mode: Literal["token", "disabled"] = "disabled"
    head: HeadState = Field(default_factory=HeadState)
    observability_host: str | None = None
    observability: ObservabilityState | None = None  # set when the cluster has an observability node
    next_pool_index: int = 1  # pool ids are never reused, even after the newest pool was removed
    pools: list[PoolState] = Field(default_factory=list)

    # Upstream RayDog's saved-state keys, kept so its users' tooling keeps reading our state.
    @property
    def work_requirement_id(self) -> str:
        return self.cluster_id

    @property
    def worker_pool_ids(self) -> list[str]:
        return [pool.pool_id for pool in self.pools]

    @property
    def head_ip(self) -> str | None:
        return self.head.private_ip

    @property
    def ray_address(self) -> str | None:
        """GCS address for `ray.init(address=...)` on the head's network."""
        return f"{self.head.private_ip}:{self.head.gcs_port}" if self.head.private_ip else None

    @property
    def dashboard_url(self) -> str | None:
        ip = self.head.public_ip or self.head.private_ip
        return f"http://{ip}:{self.head.dashboard_port}" if ip else None

    @property
    def client_address(self) -> str | None:
        ip = self.head.public_ip or self.head.private_ip
        return f"ray://{ip}:{self.head.client_port}" if ip else None

    @property
    def prometheus_url(self) -> str | None:
        """The observability node's Prometheus on the cluster's private network (from outside it: tunnel
        through the head, `RayTunnels.observability_forwards`)."""
        return self._observability_url("prometheus_port")

    @property
    def grafana_url(self) -> str | None:
        """The observability node's Grafana on the cluster's private network (see `prometheus_url`)."""
        return self._observability_url("grafana_port")

    def _observability_url(self, port_field: str) -> str | None:
        if self.observability is None or not self.observability_host:
            return None
        return f"http://{self.observability_host}:{getattr(self.observability, port_field)}"

    def to_json(self) -> str:
        data = self.model_dump(mode="json")
        data["work_requirement_id"] = self.work_requirement_id
        data["worker_pool_ids"] = self.worker_pool_ids
        return json.dumps(data, indent=2)

    def to_dict(self) -> dict[str, Any]:
        """A plain JSON-safe dict (Airflow XCom)."""
        return json.loads(self.to_json())

    @classmethod
    def from_json(cls, text: str | bytes | dict[str, Any]) -> ClusterState:
        """Parse saved state; any problem becomes a StateError saying what is wrong with it."""
        if isinstance(text, dict):
            data = dict(text)
        else:
            try:
                data = json.loads(text)
            except (TypeError, ValueError) as error:
                raise StateError(f"saved cluster state is not valid JSON: {error}") from None
        if not isinstance(data, dict):
            raise StateError("saved cluster state must be a JSON object")
        version = data.get("version")
        if version is None and "work_requirement_id" in data:
            raise StateError(
                "this is upstream RayDog's state format; shut it down with upstream's "
                "RayDogClusterProxy or build the cluster again with raydog"
            )
        if version != STATE_VERSION:
            raise StateError(
                f"saved cluster state has version {version!r}; this raydog reads {STATE_VERSION}"
            )
        data.pop("work_requirement_id", None)
        data.pop("worker_pool_ids", None)
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            raise StateError(f"saved cluster state is corrupt: {field}: {first['msg']}") from None

    @classmethod
    def from_file(cls, path: str | Path) -> ClusterState:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as error:
            raise StateError(f"cannot read saved cluster state {str(path)!r}: {error.strerror}") from None
        return cls.from_json(text)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())
