"""The Backend protocol: the only place that knows where nodes live.

The builder, the autoscaler NodeProvider and both orchestrator integrations talk to nodes through this
protocol only. A backend starts pools of nodes, each node running a bash start-up script with an
environment, reports what is alive (the truth, not a cache) and removes what it started.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from raydog_core.errors import NodeEndedByCapError, NodeFailedError, NodeLostError, RayDogError
from raydog_core.pricing import ClusterUsage, PlanQuote, SpendStatus
from raydog_core.spec import NodeResources, YellowDogNodeOptions

if TYPE_CHECKING:
    from raydog_core.postmortem import LogBudget


class NodeRole(StrEnum):
    HEAD = "head"
    WORKER = "worker"
    OBSERVABILITY = "observability"


class NodeStatus(StrEnum):
    PENDING = "pending"  # accepted, machine or process not yet running the script
    RUNNING = "running"  # the start-up script is running
    FAILED = "failed"  # the script exited, or the machine died, without being asked to
    TERMINATED = "terminated"  # stopped because RayDog asked

    @property
    def is_final(self) -> bool:
        return self in (NodeStatus.FAILED, NodeStatus.TERMINATED)


class NodeEnd(StrEnum):
    """Who ended a failed node, where it was not its own script: what retrying can mend differs."""

    MACHINE_LOST = "machine_lost"  # its machine went away (a spot instance reclaimed, a crash)
    SPEND_CAP = "spend_cap"  # the platform ended it at the cluster's spend cap


def node_failure(node: NodeInfo, role: str | None = None) -> NodeFailedError:
    """The error for a failed node: a lost machine is infrastructure (worth a retry), a node ended at the
    spend cap is the cap, anything else its script's failure."""
    kinds: dict[NodeEnd | None, type[NodeFailedError]] = {
        NodeEnd.MACHINE_LOST: NodeLostError,
        NodeEnd.SPEND_CAP: NodeEndedByCapError,
    }
    return kinds.get(node.ended_by, NodeFailedError)(
        role or node.role.value, node.node_id, node.detail or f"status {node.status.value}"
    )


@dataclass(frozen=True)
class HeadPorts:
    """Where the head listens. Fixed defaults on YellowDog (one node per machine), free ports locally."""

    gcs: int = 6379
    dashboard: int = 8265
    client: int = 10001
    lease: int = 8270  # the head's watchdog (raydog_core/watchdog.py), on the head's loopback


@dataclass(frozen=True)
class ObservabilityPorts:
    """Where the observability node's Prometheus and Grafana listen, chosen with the cluster so that the
    observability node, the head (which pushes metrics there) and the workers all get the same values.
    Fixed defaults on YellowDog (a machine of its own), free ports locally."""

    prometheus: int = 9090
    grafana: int = 3000


@dataclass(frozen=True)
class BackendCapabilities:
    """What a backend's nodes are like, declared by the backend so callers never guess.

    `nodes_reachable`: this client can open TCP connections to nodes' private addresses (probe the
    head's GCS and dashboard directly); when False, clients go through an SSH tunnel to the head and
    trust the backend's node status for readiness.
    `nodes_on_client_host`: nodes are processes on the client's own machine (the local backend, or
    YellowDog instances placed on this host), so commands run as local processes and node files are
    at local paths.
    `heals_when_listing`: listing a cluster's nodes also repairs it (YellowDog: a pool short of nodes for
    a task the platform started again after its machine was lost is resized), so a client holding a
    cluster should list its nodes now and then (`raydog_core.node_watch`).
    """

    nodes_reachable: bool
    nodes_on_client_host: bool
    heals_when_listing: bool = False


@dataclass(frozen=True)
class ClusterOptions:
    """What a backend needs to open a cluster."""

    name: str
    namespace: str
    tag: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    lifetime: timedelta | None = None
    gpu_ids: Sequence[int] | None = None
    max_node_hours: int | None = None  # the spend cap, in whole node-hours (see pricing.spend_cap_hours)
    head_on_spot_allowed: bool = False  # a head template that gives spot instances is refused otherwise


@dataclass(frozen=True)
class ClusterHandle:
    """A cluster opened by a backend: ids to address it again, from this process or another one."""

    cluster_id: str
    ports: HeadPorts
    log_dir: str | None = None
    observability: ObservabilityPorts = field(default_factory=ObservabilityPorts)


@dataclass(frozen=True)
class NodeLaunch:
    """Everything a backend needs to start the nodes of one pool."""

    role: NodeRole
    pool_name: str  # a valid YellowDog name, unique in the cluster ("demo-head", "demo-w1")
    script: str  # bash script text
    env: Mapping[str, str] = field(repr=False)  # environment of every node of the pool (holds secrets)
    resources: NodeResources = field(default_factory=NodeResources)
    yellowdog: YellowDogNodeOptions = field(default_factory=YellowDogNodeOptions)
    set_cloud_instance_id: bool = False  # export RAY_CLOUD_INSTANCE_ID=<node id> (autoscaler v2)
    # A node whose machine is lost (a spot instance reclaimed, a crash) is started again where the backend
    # can (YellowDog: the platform's retry policy). The builder's workers; Ray's autoscaler replaces its own.
    replace_lost: bool = False


@dataclass(frozen=True)
class PoolPlan:
    """A pool the builder is about to start, for the backend's check (and price) before anything exists."""

    field: (
        str  # the spec field that asks for it, named in a SpecError ("worker_pools.0.worker_node_resources")
    )
    count: int
    resources: NodeResources
    role: NodeRole = NodeRole.WORKER
    pool: str = ""  # how a plan names it ("head", "worker_pools.0")
    # (`dataclasses.field`: the attribute `field` above hides the function in this class body)
    yellowdog: YellowDogNodeOptions = dataclasses.field(default_factory=YellowDogNodeOptions)
    template_field: str | None = None  # where its template is named, if not the builder's field (ray up)


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    pool_id: str
    role: NodeRole
    status: NodeStatus
    private_ip: str | None = None
    public_ip: str | None = None
    detail: str = ""  # why a node failed, with the tail of its log where the backend has one
    ended_by: NodeEnd | None = None  # who ended a failed node, where not its own script (see `node_failure`)
    # why a node that waits for a machine gets none, where the backend knows (YellowDog: no capacity)
    blocked_by: str = ""
    started_at: datetime | None = None  # when its script started (for a post-mortem's timeline)
    ended_at: datetime | None = None  # when it ended, where it has


@dataclass(frozen=True)
class ClusterRecord:
    """One cluster as `raydog list` shows it."""

    cluster_id: str
    name: str
    backend: str
    labels: Mapping[str, str]
    created_at: datetime
    live_nodes: int
    # "running"; "stopped" (shut down); "ended" (by itself: leases lapsed, idle, lifetime); "ending" (its
    # nodes are done but platform resources, e.g. YellowDog pools, are still being released)
    state: str
    namespace: str = ""  # a cluster is identified by namespace and name, never by name alone
    usage: ClusterUsage | None = None  # of a finished cluster, where the backend still knows it


@runtime_checkable
class Backend(Protocol):
    kind: str
    capabilities: BackendCapabilities

    def check_plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> None:
        """Raise SpecError, before anything exists, if these pools (head first) can never all start here."""

    def plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> PlanQuote:
        """check_plan, then what each pool would run on and cost per node-hour, with the allowances
        that would cover it; creates nothing."""

    def open_cluster(self, options: ClusterOptions) -> ClusterHandle:
        """Create the cluster's container (YellowDog work requirement, local cluster directory)."""

    def create_pool(self, cluster_id: str, launch: NodeLaunch, count: int) -> tuple[str, list[str]]:
        """Provision a pool and start `count` nodes in it; returns (pool id, node ids)."""

    def add_nodes(self, cluster_id: str, pool_id: str, launch: NodeLaunch, count: int) -> list[str]:
        """Start `count` more nodes in an existing pool; returns their ids."""

    def list_nodes(self, cluster_id: str) -> list[NodeInfo]:
        """Every node the cluster ever had that is not yet forgotten, with its status, in one call."""

    def head_ports(self, cluster_id: str) -> HeadPorts | None:
        """The head's ports as the backend chose them, or None where it cannot know (then a saved
        state's ports are used, on a head whose address the backend vouches for)."""

    def terminate_nodes(self, cluster_id: str, node_ids: Sequence[str]) -> None:
        """Stop these nodes (idempotent; unknown or finished ids are ignored)."""

    def remove_pool(self, cluster_id: str, pool_id: str) -> None:
        """Stop every node of a pool and release the pool (idempotent)."""

    def shut_down(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> list[str]:
        """Stop everything of the cluster; keeps going past failures and returns them (idempotent).

        `pool_ids` are the pools saved state knows of; a backend also finds the rest by itself.
        """

    def node_log_tail(self, cluster_id: str, node_id: str, lines: int = 20) -> str:
        """The last lines a node's script printed, for error messages (may be empty)."""

    def write_node_logs(self, cluster_id: str, into: Path, logs: LogBudget) -> None:
        """Put what the backend keeps of the cluster's node logs under `into` (for its post-mortem),
        through `logs`, which keeps each file's tail within the bundle's size; after shut_down, when the
        nodes have written everything. Nothing is fetched from a node itself."""

    def usage(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> ClusterUsage:
        """Node-hours and their cost so far, from the backend's records (after shut_down: the total)."""

    def spend(self, cluster_id: str) -> SpendStatus | None:
        """How much of the cluster's spend cap is used; None for a cluster without one."""

    def list_clusters(self) -> list[ClusterRecord]:
        """Every cluster this backend can see (for `raydog list` and the reaper)."""

    def live_resources(self) -> list[str]:
        """Everything still alive that RayDog created, one line each: the leak check."""

    def close(self) -> None:
        """Release client-side resources (connections); never touches the cluster."""


def lifetime_left(ends_at: datetime, cluster: str) -> timedelta:
    """What is left of a cluster's lifetime for a node started now, in whole seconds rounded up (a zero
    limit would mean none); a cluster past its lifetime takes no new nodes."""
    left = ends_at - datetime.now(UTC)
    if left < timedelta(seconds=1):
        raise RayDogError(
            f"cluster {cluster} has reached its lifetime (cluster_lifetime): it takes no new nodes"
        )
    return timedelta(seconds=math.ceil(left.total_seconds()))
