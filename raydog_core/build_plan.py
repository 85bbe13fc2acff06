"""What `build()` asks of the backend, worked out from the spec before anything exists: the cluster's
options, every pool with its resources (head first), the keep-alive terms, and the state a new cluster
starts from.

`plan()` checks and prices the pools `pool_plans` lists, and `build()` checks the same list before its
first node, so what a plan says is what a build starts.
"""

from __future__ import annotations

import dataclasses

from raydog_core import leases
from raydog_core.backends.base import BackendCapabilities, ClusterOptions, NodeRole, PoolPlan
from raydog_core.cluster_pools import WorkerPools
from raydog_core.lifecycle import ClusterSession, head_state
from raydog_core.pricing import ClusterPlan, spend_cap_hours
from raydog_core.scripts import load_script
from raydog_core.spec import ClusterSpec, NodeResources
from raydog_core.state import ClusterState, LeaseState, ObservabilityState


def cluster_options(spec: ClusterSpec) -> ClusterOptions:
    return ClusterOptions(
        name=spec.cluster_name,
        namespace=spec.cluster_namespace,
        tag=spec.cluster_tag,
        labels=spec.cluster_labels,
        lifetime=spec.cluster_lifetime,
        gpu_ids=spec.gpu_ids,
        head_on_spot_allowed=spec.head_node_allow_spot,
    )


def capped_options(spec: ClusterSpec, plan: ClusterPlan | None) -> ClusterOptions:
    """The options a new cluster is opened with, its spend cap in node-hours (`plan`: what the build
    costs, needed for a max_cost)."""
    return dataclasses.replace(
        cluster_options(spec), max_node_hours=spend_cap_hours(spec.max_node_hours, spec.max_cost, plan)
    )


def pool_plans(spec: ClusterSpec, pools: WorkerPools) -> list[PoolPlan]:
    """Every node build() starts, head first (the observability node asks for no GPU)."""
    plans = [
        PoolPlan(
            "head_node_resources",
            1,
            spec.head_node_resources,
            NodeRole.HEAD,
            "head",
            spec.head_yellowdog(),
        )
    ]
    if spec.enable_observability:
        plans.append(
            PoolPlan(
                "observability_node",
                1,
                NodeResources(num_gpus=0),
                NodeRole.OBSERVABILITY,
                "observability",
                spec.observability_yellowdog(),
            )
        )
    for pool in pools:
        plans.append(
            PoolPlan(
                f"{pool.where}.worker_node_resources",
                pool.spec.worker_pool_node_count,
                pool.spec.worker_node_resources,
                NodeRole.WORKER,
                pool.where if pool.where != "add_worker_pool" else pool.internal_name,
                pool.spec.yellowdog,
            )
        )
    return plans


def keep_alive(
    spec: ClusterSpec,
    asked: bool | None,
    in_with_block: bool,
    capabilities: BackendCapabilities,
    held_elsewhere: bool,
) -> tuple[bool, LeaseState | None]:
    """Whether a new cluster is leased, and its keep-alive terms (`raydog_core.leases`); neither where
    the head's script does not start the watchdog."""
    leased = leases.choose_leased(asked, in_with_block, capabilities, spec, held_elsewhere=held_elsewhere)
    head_script = load_script(spec.head_node_ray_start_script, "head")
    terms = leases.without_watchdog(leases.terms_for(spec, leased), head_script, spec.cluster_name)
    return leased and terms is not None, terms


def initial_state(spec: ClusterSpec, session: ClusterSession, api_url: str | None) -> ClusterState:
    """The state of a cluster just opened, before any node: what a teardown elsewhere needs."""
    handle = session.handle
    return ClusterState(
        backend=spec.backend,
        cluster_id=handle.cluster_id,
        cluster_name=spec.cluster_name,
        cluster_namespace=spec.cluster_namespace,
        cluster_tag=spec.cluster_tag,
        labels=spec.cluster_labels,
        api_url=api_url,
        runtime_env=spec.runtime_env,
        worker_preload_modules=spec.worker_preload_modules,
        log_dir=handle.log_dir,
        auth_mode=spec.ray_auth_mode,
        head=head_state(handle.ports, leased=bool(session.lease)),
        lease=session.lease,
        observability=ObservabilityState(
            prometheus_port=handle.observability.prometheus,
            grafana_port=handle.observability.grafana,
        )
        if spec.enable_observability
        else None,
    )
