"""The local backend's manifest (`cluster.json`): what a local cluster is, shared by every process.

Any process of the user reads it to list, grow or stop the cluster, so it is input from disk: validated
on every read. Its temp dir is deleted at shut-down, so it must be one this backend made (`/tmp/rd-<hex>`),
never whatever path a damaged or tampered file names; node processes are kept as `ProcessRef`s, so a
reused PID is never mistaken for a node.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from raydog_core.backends.base import NodeRole, NodeStatus
from raydog_core.processes import ProcessRef

TEMP_ROOT = Path("/tmp")
TEMP_PREFIX = "rd-"
_TEMP_NAME = re.compile(rf"{TEMP_PREFIX}[0-9a-f]{{8}}")
Port = Field(ge=1, le=65535)


def is_cluster_temp_dir(path: Path) -> bool:
    """Whether `path` is a name this backend gives a cluster's temp dir (`/tmp/rd-<hex>`)."""
    return path.parent == TEMP_ROOT and bool(_TEMP_NAME.fullmatch(path.name))


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ManifestPorts(_Record):
    gcs: int = Port
    dashboard: int = Port
    client: int = Port
    lease: int | None = Field(None, ge=1, le=65535)  # None in manifests written before leases


class ManifestPool(_Record):
    role: NodeRole
    removed: bool = False


class ManifestNode(_Record):
    pool_id: str
    role: NodeRole
    status: NodeStatus
    process: ProcessRef
    gpus: list[int] = Field(default_factory=list)
    temp_name: str = Field("", pattern=r"^(n[0-9]+)?$")  # below the cluster's temp dir
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    ended_at: datetime | None = None  # when RayDog stopped it (or found the cluster ended)

    def stop(self, status: NodeStatus = NodeStatus.TERMINATED) -> None:
        """Record the node as stopped now (a failed node keeps its status), once."""
        if self.status == NodeStatus.RUNNING:
            self.status = status
        self.ended_at = self.ended_at or datetime.now(UTC)


class Manifest(_Record):
    cluster_id: str
    name: str
    namespace: str
    labels: dict[str, str] = Field(default_factory=dict)
    created_at: datetime
    lifetime_s: float | None = Field(None, gt=0)
    temp_dir: Path
    ports: ManifestPorts
    gpus: list[int] = Field(default_factory=list)
    gpu_assigned: dict[str, list[int]] = Field(default_factory=dict)
    pools: dict[str, ManifestPool] = Field(default_factory=dict)
    nodes: dict[str, ManifestNode] = Field(default_factory=dict)
    next_node: int = Field(1, ge=1)
    state: Literal["running", "stopped", "ended"] = "running"  # ended: by itself, not shut down

    @field_validator("temp_dir")
    @classmethod
    def _made_by_this_backend(cls, value: Path) -> Path:
        if not is_cluster_temp_dir(value):
            raise ValueError(f"temp_dir {str(value)!r} is not a local cluster's temp dir")
        return value

    @classmethod
    def parse(cls, text: str) -> Manifest:
        return cls.model_validate_json(text)

    def dump(self) -> str:
        return self.model_dump_json(indent=1)

    def node_hours(self, now: datetime) -> float:
        """Hours its nodes ran: each from its start to when it was stopped (or now)."""
        return (
            sum(max(((n.ended_at or now) - n.started_at).total_seconds(), 0.0) for n in self.nodes.values())
            / 3600
        )
