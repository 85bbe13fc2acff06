"""RayDog's clusters as the platform holds them, found with nothing stored client-side.

A work requirement is RayDog's when a task group carries RayDog's labels tag (`labels`). Listing finds
the clusters that run, and the finished ones whose pools still live on (so `ray down` and `raydog reap`
can release them now); the leak check finds every live resource of any RayDog cluster.
"""

from __future__ import annotations

from datetime import UTC, datetime

from yellowdog_client.model import (
    ComputeRequirementStatus,
    WorkRequirement,
    WorkRequirementSearch,
    WorkRequirementStatus,
    WorkRequirementSummary,
)

from raydog_core.backends.base import ClusterRecord
from raydog_core.backends.yellowdog import placement as node_placement
from raydog_core.backends.yellowdog import spend_cap
from raydog_core.backends.yellowdog.api import Api, present, provisioned
from raydog_core.backends.yellowdog.labels import labels_of
from raydog_core.backends.yellowdog.pools import GONE_POOL, Pools
from raydog_core.backends.yellowdog.requirements import LIVE_REQUIREMENT, Requirements, pool_names


def list_clusters(api: Api, requirements: Requirements, pools: Pools, kind: str) -> list[ClusterRecord]:
    """Clusters with a live work requirement, and finished ones still holding a live pool.

    A cluster whose head task failed has a finished work requirement while its pools live on until
    their idle shutdown; listing it lets `ray down` and `raydog reap` release them now. Only the
    finished requirements whose name starts a live pool's name are read, not every old one.
    """
    records = []
    live_pools = pools.live_names()
    for summary in _summaries(api, WorkRequirementSearch()):
        live = summary.status in LIVE_REQUIREMENT
        if not live and not any(
            ns == summary.namespace and name.startswith(present(summary.name, "work requirement name"))
            for ns, name in live_pools
        ):
            continue
        cluster_id = present(summary.id, "work requirement id")
        requirement = requirements.get(cluster_id)
        if labels_of(requirement) is None:
            continue
        if not live and not {(requirement.namespace, n) for n in pool_names(requirement)} & live_pools:
            continue
        labels = labels_of(requirement) or {}
        nodes = sum(
            count
            for group in requirement.taskGroups or []
            for status, count in ((group.taskSummary and group.taskSummary.statusCounts) or {}).items()
            if status.in_progress
        )
        records.append(
            ClusterRecord(
                cluster_id=cluster_id,
                name=present(requirement.name, "work requirement name"),
                namespace=present(requirement.namespace, "work requirement namespace"),
                backend=kind,
                labels={k: v for k, v in labels.items() if k != node_placement.HEAD_PORTS_LABEL},
                created_at=requirement.createdTime or datetime.now(UTC),
                live_nodes=nodes,
                state="running" if live else "ending",
            )
        )
    return records


def live_resources(api: Api, requirements: Requirements, pools: Pools) -> list[str]:
    """Live work requirements, pools and compute requirements of every RayDog cluster the key sees,
    and RayDog's spend cap allowances."""
    leaks = spend_cap.live_caps(api.client, api.call)
    for requirement in _raydog_requirements(api, requirements, None):
        where = f"{requirement.namespace}/{requirement.name}"
        status = present(requirement.status, "work requirement status")
        if not status.finished:
            leaks.append(f"work requirement {where} ({status.value})")
        for pool_name in pool_names(requirement):
            pool = pools.by_name(requirement.namespace, pool_name)
            if pool is None:
                continue
            pool_status = present(pool.status, "worker pool status")
            if pool_status not in GONE_POOL:
                leaks.append(f"worker pool {requirement.namespace}/{pool_name} ({pool_status.value})")
            compute = pools.compute_requirement(
                present(provisioned(pool).computeRequirementId, "compute requirement id")
            )
            compute_status = present(compute.status, "compute requirement status")
            if compute_status != ComputeRequirementStatus.TERMINATED:
                leaks.append(
                    f"compute requirement {requirement.namespace}/{compute.name} ({compute_status.value})"
                )
    return leaks


def _raydog_requirements(
    api: Api, requirements: Requirements, statuses: list[WorkRequirementStatus] | None
) -> list[WorkRequirement]:
    found = []
    for summary in _summaries(api, WorkRequirementSearch(statuses=statuses)):
        requirement = requirements.get(present(summary.id, "work requirement id"))
        if labels_of(requirement) is not None:
            found.append(requirement)
    return found


def _summaries(api: Api, search: WorkRequirementSearch) -> list[WorkRequirementSummary]:
    return api.call(lambda: api.client.work_client.get_work_requirements(search).list_all(), "list clusters")
