"""Prefect Blocks for RayDog: the cluster configuration and the YellowDog credentials.

Both are edited in the Prefect UI and loaded by name. The cluster Block is a thin, UI-facing view of
`raydog_core.spec.ClusterSpec`: same field names, and every value is validated by building a
ClusterSpec, so a Block can never hold a cluster RayDog would refuse. It is also a resource:

    with RayDogClusterConfig.load("prod") as cluster:   # built on entry, always shut down on exit
        ray.init(address=cluster.ray_address)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, ClassVar

from prefect.blocks.core import Block
from pydantic import Field, HttpUrl, PrivateAttr, SecretStr, model_validator
from pydantic.fields import FieldInfo

from raydog_core import credentials as core_credentials
from raydog_core.cluster import RayDogCluster, StateListener
from raydog_core.errors import RayDogError
from raydog_core.spec import ClusterFields, ClusterSpec, WorkerPoolSpec, build_model
from raydog_prefect.connection import ConnectionMode

DOCS_URL = "https://pypi.org/project/raydog/"  # the distribution's page; docs/prefect.md ships with it

# Block metadata Prefect adds to a Block's data; everything else the user gives must be a ClusterSpec field.
_BLOCK_METADATA_KEYS = frozenset({"block_type_slug"})


class YellowDogCredentials(Block):
    """An application key for the YellowDog platform; the secret is stored encrypted and never shown."""

    _block_type_name = "RayDog YellowDog Credentials"
    _block_type_slug = "raydog-yellowdog-credentials"
    _documentation_url = HttpUrl(DOCS_URL)
    _code_example = """from raydog_prefect import YellowDogCredentials

credentials = YellowDogCredentials.load("BLOCK_NAME")"""

    application_key_id: str = Field(description="YellowDog application key ID.")
    application_key_secret: SecretStr = Field(description="YellowDog application key secret.")
    platform_api_url: str = Field(
        core_credentials.DEFAULT_API_URL, description="URL of the YellowDog platform API."
    )

    @model_validator(mode="after")
    def _valid_for_core(self) -> YellowDogCredentials:
        self.to_core()
        return self

    def to_core(self) -> core_credentials.YellowDogCredentials:
        """The credentials as raydog_core takes them (validated there)."""
        return core_credentials.YellowDogCredentials.resolve(
            self.application_key_id, self.application_key_secret, self.platform_api_url
        )


def _default_worker_pools() -> list[WorkerPoolSpec]:
    return [WorkerPoolSpec(worker_pool_node_count=1, worker_pool_internal_name="workers")]


def _spec_field(name: str) -> FieldInfo:
    """ClusterSpec's declaration of a field (type constraints and description), to give it another default."""
    return ClusterFields.model_fields[name]


class RayDogClusterConfig(Block, ClusterFields):
    """A Ray cluster RayDog builds for a flow run, on this machine or on YellowDog, and always removes.

    The cluster fields are declared once, in raydog_core.spec.ClusterFields (upstream RayDog's keyword
    names); only two defaults differ here, so that a Block saved with no changes is a usable cluster.
    """

    _block_type_name = "RayDog Cluster Config"
    _block_type_slug = "raydog-cluster-config"
    _documentation_url = HttpUrl(DOCS_URL)
    _code_example = """from raydog_prefect import RayDogClusterConfig, RayDogTaskRunner

config = RayDogClusterConfig.load("BLOCK_NAME")

@flow(task_runner=RayDogTaskRunner(cluster="BLOCK_NAME"))  # loaded when the flow runs
def my_flow(): ..."""

    cluster_name: Annotated[str, _spec_field("cluster_name")] = "raydog"
    worker_pools: Annotated[list[WorkerPoolSpec], _spec_field("worker_pools")] = Field(
        default_factory=_default_worker_pools
    )

    yellowdog_credentials: YellowDogCredentials | None = Field(
        None, description="YellowDog credentials (default: YD_API_KEY_ID / YD_API_KEY_SECRET)."
    )

    # How the flow's process reaches Ray (not part of the cluster itself).
    ray_connection: ConnectionMode = Field(
        "auto",
        description=(
            "How to reach Ray: 'direct', 'ray-client', 'ssh-tunnel' (Ray Client through SSH to the head), "
            "or 'auto' (direct for local, ssh-tunnel for YellowDog: the others send the Ray token without TLS)."
        ),
    )
    ssh_user: str | None = Field(None, description="User to log in as on the head node for the SSH tunnel.")
    ssh_private_key_file: str | None = Field(
        None, description="Private key file for the SSH tunnel, on the machine running the flow."
    )
    ssh_port: int = Field(22, ge=1, le=65535, description="SSH port of the head node.")
    ssh_known_hosts_file: str | None = Field(
        None, description="known_hosts file holding the head's host key (or pin ssh_host_key_fingerprint)."
    )
    ssh_host_key_fingerprint: str | None = Field(
        None, description="Expected SHA256 fingerprint of the head's SSH host key."
    )
    ssh_skip_host_key_check: bool = Field(
        False,
        description="Do not verify the head's SSH host key (insecure; warned on every run). By default it "
        "is checked against ssh_known_hosts_file, ssh_host_key_fingerprint or ~/.ssh/known_hosts.",
    )

    _active_cluster: RayDogCluster | None = PrivateAttr(None)
    _spec_fields: ClassVar[frozenset[str]] = frozenset(ClusterSpec.model_fields)

    @model_validator(mode="after")
    def _valid_as_spec(self) -> RayDogClusterConfig:
        self.to_spec()  # ClusterSpec's validation is the only one: a SpecError names the field and the fix
        return self

    @classmethod
    def from_spec(cls, spec: ClusterSpec, yellowdog_credentials: YellowDogCredentials | None = None):
        """A Block holding this spec (e.g. to save a YAML spec as a Block)."""
        return cls(**spec.model_dump(), yellowdog_credentials=yellowdog_credentials)

    def to_spec(self, **overrides: Any) -> ClusterSpec:
        """The ClusterSpec this Block describes; `overrides` replace fields (validated the same way)."""
        values = {name: getattr(self, name) for name in self._spec_fields}
        values["head_node_resources"] = self.head_node_resources.model_dump()
        values["worker_pools"] = [pool.model_dump() for pool in self.worker_pools]
        extras = {k: v for k, v in (self.model_extra or {}).items() if k not in _BLOCK_METADATA_KEYS}
        return build_model(ClusterSpec, {**values, **extras, **overrides})

    def credentials(self) -> core_credentials.YellowDogCredentials | None:
        """YellowDog credentials from the nested Block, else from YD_API_* variables; None for 'local'."""
        if self.backend != "yellowdog":
            return None
        if self.yellowdog_credentials is not None:
            return self.yellowdog_credentials.to_core()
        return core_credentials.YellowDogCredentials.resolve()

    def create_cluster(
        self,
        extra_labels: dict[str, str] | None = None,
        on_state: StateListener | None = None,
        preload_modules: Sequence[str] = (),
    ) -> RayDogCluster:
        """An unbuilt RayDogCluster for this configuration, with `extra_labels` added to its labels and
        `preload_modules` as its `worker_preload_modules` where the Block names none."""
        spec = self.to_spec(
            cluster_labels={**self.cluster_labels, **(extra_labels or {})},
            worker_preload_modules=list(self.worker_preload_modules or preload_modules),
        )
        creds = self.credentials()
        if creds is None:
            return RayDogCluster(spec=spec, on_state=on_state)
        return RayDogCluster(
            spec=spec,
            on_state=on_state,
            yd_application_key_id=creds.key_id,
            yd_application_key_secret=creds.key_secret.get_secret_value(),
            yd_platform_api_url=creds.api_url,
        )

    # -- the Block as a resource --------------------------------------------------------------------

    def __enter__(self) -> RayDogCluster:
        if self._active_cluster is not None:
            raise RayDogError("this RayDogClusterConfig is already in use as a context manager")
        cluster = self.create_cluster()
        cluster.build()  # a failed build shuts down what it created before raising
        self._active_cluster = cluster
        return cluster

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        cluster, self._active_cluster = self._active_cluster, None
        if cluster is not None:
            cluster.__exit__(exc_type, exc, tb)  # shuts down; never hides the with-block's own error
