"""ClusterState: the versioned, secret-free JSON that lets another process find and shut down a cluster.

It is what Airflow passes in XCom, what a crashed flow leaves behind for the reaper and what
`raydog down` reads. It holds ids, addresses and ports; never a key, token or password.

Saved state is input from outside (XCom, a file, a colleague), so it is validated as strictly as a
spec: ids are plain identifiers (a local cluster id becomes a directory name), addresses are IP
addresses, ports are ports, names follow the spec's rules. Nothing in it chooses where a credential or
token is sent: see `raydog_core.lifecycle.ClusterSession.vouched_head`.
"""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from raydog_core import limits, naming
from raydog_core.errors import SpecError, StateError
from raydog_core.runtime_envs import check_runtime_env

STATE_VERSION: Final = 1
MAX_STATE_BYTES = 1 << 20  # a state of a thousand pools is ~200 KiB
Phase = Literal["building", "running", "shut_down"]

# Backend ids: a local cluster id is a directory name, YellowDog ids look like "ydid:wrkreq:000000:...".
Identifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,199}$")]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _ip_address(value: str) -> str:
    ipaddress.ip_address(value)  # ValueError names the bad value
    return value


def _name(value: str) -> str:
    try:
        return naming.check_name("name", value)
    except SpecError as error:
        raise ValueError(error.problem) from None


IpAddress = Annotated[str, AfterValidator(_ip_address)]
Name = Annotated[str, AfterValidator(_name)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HeadState(_Record):
    node_id: Identifier | None = None
    private_ip: IpAddress | None = None
    public_ip: IpAddress | None = None
    gcs_port: Port = 6379
    dashboard_port: Port = 8265
    client_port: Port = 10001
    lease_port: Port | None = None  # the watchdog's lease endpoint, on clusters that have one


class LeaseState(_Record):
    """What a client needs to hold a lease on the cluster (with its token and a path to the head)."""

    # A lease not renewed for this long lapses; None: leases are welcome but not needed (a `ray up` cluster
    # or an unleased build with an idle TTL ends on idleness alone).
    timeout_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)
    idle_ttl_s: float = Field(0.0, ge=0, le=30 * 24 * 3600)  # the cluster stays up idle this long after
    first_lease_within_s: float | None = Field(None, gt=0, le=7 * 24 * 3600)  # default: timeout_s
    # Ray workers the head starts for the next run as one leaves
    warm_workers: int = Field(0, ge=0, le=limits.MAX_WARM_WORKERS)


class ObservabilityState(_Record):
    """Ports of the observability node's services; the node's address is `ClusterState.observability_host`."""

    prometheus_port: Port = 9090
    grafana_port: Port = 3000


class PoolState(_Record):
    pool_id: Identifier  # the backend's id
    raydog_id: Identifier | None = None  # the id add_worker_pool returned ("<cluster>-w<n>")
    role: Literal["head", "worker", "observability"]
    internal_name: Label | None = None
    node_count: int = Field(0, ge=0, strict=True)
    node_ids: list[Identifier] = Field(default_factory=list)


class UsageState(_Record):
    """What the cluster used, measured from the backend's records when it was shut down."""

    node_hours: float = Field(ge=0)
    cost: float | None = Field(None, ge=0)  # None: some node's price was unknown
    currency: Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")] | None = None
    measured_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


class ClusterState(_Record):
    """Everything needed to reconnect to a cluster and to clean it up, and nothing secret."""

    version: Literal[1] = STATE_VERSION
    backend: Literal["local", "yellowdog"]
    cluster_id: Identifier
    cluster_name: Name
    cluster_namespace: Name
    cluster_tag: Label | None = None
    labels: dict[Label, Label] = Field(default_factory=dict)
    phase: Phase = "building"
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    # The platform this cluster was built on, for information: credentials only ever go to the URL the
    # caller configured, and a state naming another one is refused (see `check_platform`).
    api_url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)] | None = None
    log_dir: Annotated[str, StringConstraints(max_length=4096)] | None = None  # shown to users, never opened
    auth_mode: Literal["token", "disabled"] = "disabled"
    head: HeadState = Field(default_factory=HeadState)
    observability_host: IpAddress | None = None
    observability: ObservabilityState | None = None  # set when the cluster has an observability node
    lease: LeaseState | None = None  # set when the cluster ends itself once no lease holds it
    # pool ids are never reused, even after the newest pool was removed
    next_pool_index: int = Field(1, ge=1, le=naming.MAX_WORKER_POOLS + 1, strict=True)
    pools: list[PoolState] = Field(default_factory=list, max_length=naming.MAX_WORKER_POOLS + 2)
    usage: UsageState | None = None  # set at shut-down
    # The spec's runtime_env, for the drivers of later tasks (an Airflow job); no secret can be in it
    runtime_env: dict[str, Any] | None = None
    # What every Ray worker of the cluster imports as it starts, for nodes added later too
    worker_preload_modules: list[str] = Field(default_factory=list)

    @field_validator("worker_preload_modules")
    @classmethod
    def _valid_module_names(cls, value: list[str]) -> list[str]:
        return limits.check_module_names("state.worker_preload_modules", value)

    @field_validator("runtime_env")
    @classmethod
    def _valid_runtime_env(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        # Its paths are the machine's that built the cluster: checked where a driver uses them.
        return None if value is None else check_runtime_env(value, "state.runtime_env", check_paths=False)

    def check_platform(self, api_url: str) -> None:
        """Refuse to use this state with credentials for another platform than the one it names."""
        if self.api_url is not None and self.api_url.rstrip("/") != api_url.rstrip("/"):
            raise StateError(
                f"saved cluster state names the YellowDog platform {self.api_url!r}, but the credentials "
                f"are for {api_url!r}; credentials only go to the platform you configured: set "
                "yd_platform_api_url / YD_API_URL to the state's platform if you trust it"
            )

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
            if len(text) > MAX_STATE_BYTES:
                raise StateError(f"saved cluster state is {len(text)} bytes long, at most {MAX_STATE_BYTES}")
            try:
                data = json.loads(text)
            except RecursionError:
                raise StateError("saved cluster state is nested too deeply to be a cluster state") from None
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
        if type(version) is not int or version != STATE_VERSION:
            raise StateError(
                f"saved cluster state has version {version!r}; this raydog reads {STATE_VERSION}"
            )
        data.pop("work_requirement_id", None)
        data.pop("worker_pool_ids", None)
        try:
            return cls.model_validate(data)
        except RecursionError:
            raise StateError("saved cluster state is nested too deeply to be a cluster state") from None
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"])
            problem = str(first["msg"]).removeprefix("Value error, ")
            raise StateError(f"saved cluster state is corrupt: {field}: {problem}") from None

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
