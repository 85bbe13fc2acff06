"""What `raydog list` shows of a running cluster's leases: who holds it, for how long, and how long it
has been idle, as its head's watchdog sees them.

Only asked where this machine reaches the head directly and holds the cluster's token: the token goes
to the head's address as the backend reports it, at the lease port the backend (or this machine's own
record of a warm cluster) knows. Anything else shows as unknown; listing never fails on it.
"""

from __future__ import annotations

import logging

from raydog_core import auth, warm_files
from raydog_core.backends.base import Backend, ClusterRecord, NodeRole, NodeStatus
from raydog_core.leases import LeaseClient, LeaseError
from raydog_core.state import ClusterState

log = logging.getLogger("raydog")

LISTING_TIMEOUT_S = 3.0


def lease_port(backend: Backend, record: ClusterRecord) -> int | None:
    """The lease port the backend knows, else the one this machine's record of a warm cluster names."""
    known = backend.head_ports(record.cluster_id)
    if known is not None:
        return known.lease
    state: ClusterState | None = warm_files.saved_state(record.name)
    if state is None or state.cluster_id != record.cluster_id:
        return None
    return state.head.lease_port


def lease_view(backend: Backend, record: ClusterRecord) -> dict | None:
    """The watchdog's view (`LeaseClient.view`), or None where it cannot be asked from here."""
    if record.state != "running" or not backend.capabilities.nodes_reachable:
        return None
    port = lease_port(backend, record)
    if port is None:
        return None
    head = next(
        (
            n
            for n in backend.list_nodes(record.cluster_id)
            if n.role == NodeRole.HEAD and n.status == NodeStatus.RUNNING and n.private_ip
        ),
        None,
    )
    if head is None:
        return None
    client = LeaseClient(f"http://{head.private_ip}:{port}", auth.token_for(record.cluster_id))
    try:
        return client.view(timeout_s=LISTING_TIMEOUT_S)
    except LeaseError as error:
        log.debug("leases of cluster %s not readable: %s", record.name, error)
        return None


def describe(view: dict | None) -> str:
    """One short cell: '2 held', 'idle 40s of 600s', or '-' (not leased, or not asked)."""
    if view is None:
        return "-"
    if view["leases"]:
        return f"{len(view['leases'])} held"
    if view.get("ray_active"):
        return "busy"
    return f"idle {view['idle_s']:g}s of {view['idle_ttl_s']:g}s"


def holder_lines(view: dict | None) -> list[str]:
    """One line per lease: its holder and the seconds until it lapses unless renewed."""
    if view is None:
        return []
    return [f"lease {lease['holder']} expires in {lease['expires_in_s']:g}s" for lease in view["leases"]]
