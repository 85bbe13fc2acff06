"""Where each running node is: its private and public IP, and its pool.

A task says only which platform node runs it; the addresses are on the node, and where it lacks a
public IP, on its instance. They are fixed for the node's life, so each is learnt once, and a pool at a
time: one node search per pool (and one instance search where nodes lack public IPs), however many nodes
it has, so reading a cluster's nodes costs calls per pool, not per node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

from yellowdog_client.model import InstanceSearch, Task

from raydog_core.backends.base import NodeStatus
from raydog_core.backends.yellowdog.api import Api, all_instances, node_search, present, provisioned
from raydog_core.backends.yellowdog.node_status import node_status
from raydog_core.backends.yellowdog.pools import Pools

Addresses = tuple[str | None, str | None, str | None]  # private IP, public IP, pool id


class NodeAddresses:
    """The addresses of the nodes this process has seen running a task (a cache: they never change)."""

    def __init__(self, api: Api, pools: Pools) -> None:
        self._api = api
        self._pools = pools
        self._known: dict[str, Addresses] = {}  # node id -> addresses

    def learn(self, namespace: str, tasks: Sequence[Task], pool_of: Callable[[Task], str]) -> None:
        """The addresses of every node newly running a task, a pool at a time: one node search per pool
        (and one instance search where nodes lack public IPs), however many nodes it has."""
        pool_names = {
            pool_of(task)
            for task in tasks
            if task.nodeId and task.nodeId not in self._known and node_status(task)[0] == NodeStatus.RUNNING
        }
        for pool_name in filter(None, pool_names):
            pool_id = self._pools.id_of(namespace, pool_name)
            if pool_id is None:
                continue
            nodes = self._api.call(
                partial(self._api.client.worker_pool_client.find_nodes, node_search(pool_id)),
                "list pool nodes",
            )
            public_ips: dict[str, str | None] = {}
            if any(n.details and n.details.publicIpAddress is None for n in nodes):
                public_ips = self._public_ips(pool_id)
            for node in nodes:
                if node.id is None or node.details is None:
                    continue
                details = node.details
                public_ip = details.publicIpAddress or public_ips.get(details.instanceId)
                self._known[node.id] = (details.privateIpAddress, public_ip, node.workerPoolId)

    def of(self, node_id: str) -> Addresses:
        """(private IP, public IP or None, pool id) of a node; fixed for its life, so cached."""
        if node_id not in self._known:
            pools = self._api.client.worker_pool_client
            node = self._api.call(lambda: pools.get_node_by_id(node_id), "get node")
            details = node.details
            public_ip = details.publicIpAddress if details else None
            if details and public_ip is None:
                pool_id = present(node.workerPoolId, "node's pool id")
                public_ip = self._public_ips(pool_id).get(details.instanceId)
            self._known[node_id] = (
                details.privateIpAddress if details else None,
                public_ip,
                node.workerPoolId,
            )
        return self._known[node_id]

    def _public_ips(self, pool_id: str) -> dict[str, str | None]:
        """Instance id -> public IP of a pool's instances (nodes no longer carry it): one search."""
        pool = self._pools.get(pool_id)
        search = InstanceSearch(computeRequirementId=provisioned(pool).computeRequirementId)
        compute = self._api.client.compute_client
        instances = self._api.call(partial(all_instances, compute, search), "list instances")
        return {i.id.instanceId: i.publicIpAddress for i in instances if i.id}
