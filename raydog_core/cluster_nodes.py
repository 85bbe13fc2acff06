"""Starting the nodes of a cluster a builder (`RayDogCluster`) holds: the launch each role gets, the wait
until they have joined Ray, and one replacement for a node whose start failed.

The builder makes a `NodeStarter` for each use from what it holds at that moment (its session, state and
pools); the starter keeps nothing of its own, so a builder re-attached from saved state starts nodes
exactly as the one that built the cluster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from raydog_core import naming
from raydog_core.backends.base import NodeInfo, NodeLaunch, NodeRole, node_failure
from raydog_core.cluster_pools import WorkerPool, WorkerPools
from raydog_core.errors import BuildTimeoutError, NodeFailedError, RayDogError
from raydog_core.lifecycle import ClusterSession, poll_until
from raydog_core.scripts import load_script
from raydog_core.spec import ClusterSpec, NodeResources
from raydog_core.state import ClusterState, PoolState

log = logging.getLogger("raydog")


@dataclass
class NodeStarter:
    """Starts nodes of the cluster `session` opened; `publish` is called whenever `state` changed."""

    spec: ClusterSpec
    session: ClusterSession
    state: ClusterState
    pools: WorkerPools
    publish: Callable[[], None]

    def start_observability(self, deadline: float) -> str | None:
        """The observability node (Prometheus, Grafana), once running; returns its private IP."""
        spec = self.spec
        launch = NodeLaunch(
            role=NodeRole.OBSERVABILITY,
            pool_name=spec.cluster_name + naming.OBSERVABILITY_SUFFIX,
            script=load_script(spec.observability_node_start_script, "observability"),
            env=self._node_env(NodeRole.OBSERVABILITY),
            resources=NodeResources(num_gpus=0),  # Prometheus and Grafana: no GPU of the machine
            yellowdog=spec.observability_yellowdog(),
        )
        pool_id, node_ids = self.session.backend.create_pool(self.session.cluster_id, launch, 1)
        self.state.pools.append(
            PoolState(pool_id=pool_id, role="observability", node_count=1, node_ids=node_ids)
        )
        self.publish()
        node = self.session.wait_until_running(
            node_ids[0], "observability", deadline, self._not_up_in_time("observability")
        )
        return node.private_ip

    def start_head(self, deadline: float, observability_ip: str | None, wait: bool = True) -> NodeInfo | None:
        """The head, once Ray's head is up (None at once without `wait`)."""
        self.state.observability_host = observability_ip
        spec = self.spec
        launch = NodeLaunch(
            role=NodeRole.HEAD,
            pool_name=spec.cluster_name + naming.HEAD_SUFFIX,
            script=load_script(spec.head_node_ray_start_script, "head"),
            env=self._node_env(NodeRole.HEAD),
            resources=spec.head_node_resources,
            yellowdog=spec.head_yellowdog(),
        )
        pool_id, node_ids = self.session.backend.create_pool(self.session.cluster_id, launch, 1)
        self.state.pools.insert(0, PoolState(pool_id=pool_id, role="head", node_count=1, node_ids=node_ids))
        self.state.head.node_id = node_ids[0]
        self.publish()
        if not wait:
            return None
        try:
            head = self.session.wait_for_head(node_ids[0], deadline, self._not_up_in_time("head"))
        except NodeFailedError as failed:
            head = self._replace_failed_head(failed, pool_id, launch, deadline)
        self.state.head.private_ip = head.private_ip
        self.state.head.public_ip = head.public_ip
        return head

    def launch_pool(self, pool: WorkerPool) -> None:
        """Provision a worker pool; its nodes join the head in the state."""
        self.session.require_token()
        launch = self._worker_launch(pool)
        backend_id, node_ids = self.session.launch_pool(launch, pool.spec.worker_pool_node_count)
        pool.backend_id = backend_id
        pool.node_ids = node_ids

    def wait_in_ray(self, expected: int, timeout: float, replace_failed: bool) -> int:
        """Until `expected` nodes are alive in Ray (see `RayDogCluster.wait_for_nodes`)."""
        session = self.session
        alive = 0

        def look() -> int | None:
            nonlocal alive
            for failed in session.failed_nodes(self._current_node_ids()):
                if not replace_failed:
                    raise node_failure(failed)
                self._replace_failed_worker(failed)
            alive = session.alive_in_ray(self.state.head.node_id)
            return alive if alive >= expected else None

        def timed_out() -> BuildTimeoutError:
            return BuildTimeoutError(
                f"only {alive} of {expected} nodes of cluster {self.spec.cluster_name} joined Ray "
                f"within {timeout:.0f} s; node logs: {session.handle.log_dir or 'see the backend'}"
            )

        return poll_until(look, time.monotonic() + timeout, timed_out)

    def _node_env(self, role: NodeRole, head_ip: str | None = None) -> dict[str, str]:
        return self.session.node_environment(
            role,
            head_ip=head_ip,
            observability_host=self.state.observability_host,
            observability_ports=(
                self.session.handle.observability if self.state.observability is not None else None
            ),
        )

    def _worker_launch(self, pool: WorkerPool) -> NodeLaunch:
        spec = pool.spec
        return NodeLaunch(
            role=NodeRole.WORKER,
            pool_name=pool.raydog_id,
            script=load_script(spec.worker_node_task_script, "worker"),
            env=self._node_env(NodeRole.WORKER, head_ip=self.state.head.private_ip),
            resources=spec.worker_node_resources,
            yellowdog=spec.yellowdog,
            replace_lost=True,
        )

    def _replace_failed_head(
        self, failed: NodeFailedError, pool_id: str, launch: NodeLaunch, deadline: float
    ) -> NodeInfo:
        """A head whose start failed gets one replacement, like a worker (`_replace_failed_worker`):
        nothing depends on it yet. A replacement that fails too fails the build with its log tail."""
        new_id = self._start_replacement("head", failed.node_id, failed.detail, pool_id, launch)
        if new_id is None:
            raise failed
        self.state.head.node_id = new_id
        self.state.pools[0].node_ids = [new_id]
        self.publish()
        try:
            return self.session.wait_for_head(new_id, deadline, self._not_up_in_time("head"))
        except NodeFailedError as again:
            raise _failed_again(again, new_id, failed.node_id) from None

    def _replace_failed_worker(self, failed: NodeInfo) -> None:
        """A worker whose start failed gets one replacement, as Ray's autoscaler would start another:
        on a loaded machine Ray's own start-up can time out (Ray 2.60 allows its raylet 30 s, fixed),
        and on YellowDog an instance can be lost. A replacement that fails too (a broken script, say)
        fails the wait with its log tail; so does a failed head."""
        pool = self.pools.holding(failed.node_id)
        if failed.role != NodeRole.WORKER or pool is None or pool.backend_id is None:
            raise node_failure(failed)
        replaced = self.pools.replaced(failed.node_id)
        if replaced is not None:
            raise _failed_again(node_failure(failed), failed.node_id, replaced)
        launch = self._worker_launch(pool)
        new_id = self._start_replacement("worker", failed.node_id, failed.detail, pool.backend_id, launch)
        if new_id is None:
            raise node_failure(failed)
        self.pools.replace_node(pool, failed.node_id, new_id)
        self.publish()

    def _start_replacement(
        self, role: str, failed_id: str, detail: str, pool_id: str, launch: NodeLaunch
    ) -> str | None:
        """A node in place of `failed_id`, in the same pool; None where the backend takes none (on
        YellowDog a failed head fails its work requirement, which takes no new task)."""
        log.warning(
            "the %s %s of cluster %s failed to start, starting one replacement: %s",
            role,
            failed_id,
            self.spec.cluster_name,
            detail,
        )
        backend = self.session.backend
        cluster_id = self.session.cluster_id
        try:
            backend.terminate_nodes(cluster_id, [failed_id])  # what it holds (a GPU, say) is free
            (new_id,) = backend.add_nodes(cluster_id, pool_id, launch, 1)
        except RayDogError as cannot:
            log.warning("node %s cannot be replaced: %s", failed_id, cannot)
            return None
        return new_id

    def _current_node_ids(self) -> set[str]:
        state = self.state
        current = self.pools.node_ids()
        current |= {n for p in state.pools if p.role == "observability" for n in p.node_ids}
        if state.head.node_id is not None:
            current.add(state.head.node_id)
        return current

    def _not_up_in_time(self, role: str) -> str:
        return (
            f"the {role} node of cluster {self.spec.cluster_name} was not up in time "
            f"(build timeout {self.spec.build_timeout}); everything created was shut down"
        )


def _failed_again(error: NodeFailedError, node_id: str, replaced: str) -> NodeFailedError:
    """A replacement that failed too: the error (of the same kind: two lost machines are still the
    platform's doing) names both nodes."""
    return type(error)(error.role, node_id, f"{error.detail} (it replaced {replaced}, which failed too)")
