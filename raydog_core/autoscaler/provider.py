"""RayDogNodeProvider: Ray's autoscaler on RayDog's backends (local processes or YellowDog).

```yaml
provider: {type: external, module: raydog_core.autoscaler.RayDogNodeProvider, backend: local, ...}
```

Ray builds this provider in every process that needs it: the `ray` CLI on the client (`ray up`,
`exec`, `submit`, `down`) and the autoscaler monitor on the head. Nothing is kept in the object that
another process needs: whether a node is alive comes from the backend (one `list_nodes` call per
update), Ray's tags come from the tag store on the head (one pipelined round trip), and cluster facts
(ports, pool ids) are in the tag store too. The monitor knows it runs on the head from the environment
the head's node script was given (`RAYDOG_ROLE=head`, `RAYDOG_CLUSTER_ID`), never from a user name.

It never tears a cluster down by itself: not from `__del__`, not because the client could not reach
the tag store. Only `ray down` (or terminating the head) and a failed or interrupted head creation
do, plus a cluster of the same name left by an earlier run whose head is gone.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import secrets
import shutil
import threading
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from ray.autoscaler.node_provider import NodeProvider
from ray.autoscaler.tags import (
    NODE_KIND_HEAD,
    NODE_KIND_WORKER,
    STATUS_UP_TO_DATE,
    TAG_RAY_NODE_KIND,
    TAG_RAY_NODE_STATUS,
    TAG_RAY_USER_NODE_TYPE,
)

from raydog_core import auth, leases
from raydog_core.autoscaler.config import (
    BOOTSTRAP_CONFIG,
    NodeTypeConfig,
    ProviderConfig,
    bootstrap,
    parse_provider_config,
)
from raydog_core.autoscaler.runner import LocalCommandRunner, RunningCommands
from raydog_core.autoscaler.unfinished_up import UnfinishedUpGuard
from raydog_core.backends import Backend, create_backend
from raydog_core.backends.base import (
    ClusterHandle,
    ClusterOptions,
    HeadPorts,
    NodeInfo,
    NodeLaunch,
    NodeRole,
    NodeStatus,
    PoolPlan,
    node_failure,
)
from raydog_core.errors import BuildTimeoutError, PoolGoneError, RayDogError, SpecError
from raydog_core.home import autoscaler_files, raydog_home
from raydog_core.lifecycle import ClusterSession, poll_until
from raydog_core.ports import free_ports
from raydog_core.private_files import private_dir, write_private
from raydog_core.state import LeaseState
from raydog_core.tagstore import DEFAULT_PORT, Tags, TagStore, TagStoreError, read_password

log = logging.getLogger("raydog")

AUTOSCALER_LABEL = "raydog-autoscaler"
TAG_STORE_PORT_LABEL = "raydog-tag-store-port"
CLUSTER_FACTS = "cluster-facts.json"  # ports and pool ids, kept by the client that ran `ray up`
RAY_NODE_ROLES = (NodeRole.HEAD, NodeRole.WORKER)


class RayDogNodeProvider(NodeProvider):
    """See the module docstring."""

    def __init__(
        self, provider_config: dict[str, Any], cluster_name: str, backend: Backend | None = None
    ) -> None:
        """Ray passes the first two; `backend` lets tests and benchmarks supply one (default: by config)."""
        super().__init__(provider_config, cluster_name)
        self.config: ProviderConfig = parse_provider_config(provider_config)
        self._backend: Backend = backend or create_backend(
            self.config.backend, placement=self.config.node_placement
        )
        # Nodes that are processes on this machine (local backend, YellowDog emulator): no SSH needed
        # to run commands on them, and their files are at absolute paths here.
        self._nodes_local = self._backend.capabilities.nodes_on_client_host
        self._lock = threading.RLock()  # the node cache and the connection
        self._launch_lock = threading.Lock()  # pool creation: one pool per node type
        self._cluster_id: str | None = None
        self._created_at: float | None = None  # epoch seconds: commands end with the cluster's lifetime
        self._tag_store: TagStore | None = None
        self._looked_up = False
        self._meta: Tags = {}
        self._nodes: dict[str, NodeInfo] = {}
        self._tags: dict[str, Tags] = {}
        self.backend_calls = 0  # counted for the benchmark
        self._up_guard = UnfinishedUpGuard(cluster_name)
        self._commands = RunningCommands()  # of local nodes' command runners
        self._on_head = (
            os.environ.get("RAYDOG_ROLE") == NodeRole.HEAD.value
            and os.environ.get("RAYDOG_CLUSTER_NAME") == cluster_name
            and bool(os.environ.get("RAYDOG_CLUSTER_ID"))
        )

    def __repr__(self) -> str:
        where = "head" if self._on_head else "client"
        return f"RayDogNodeProvider({self.cluster_name!r}, backend={self.config.backend!r}, {where})"

    # -- configuration hooks ----------------------------------------------------------------------------

    @staticmethod
    def bootstrap_config(cluster_config: dict[str, Any]) -> dict[str, Any]:
        if os.environ.get("RAY_UP_enable_autoscaler_v2") == "0":  # noqa: SIM112 - Ray spells it so
            raise SpecError(
                "RAY_UP_enable_autoscaler_v2",
                "is 0, but RayDog needs autoscaler v2 (v1 confuses nodes that share an IP address)",
                "unset it",
            )
        return bootstrap(cluster_config)

    def prepare_for_head_node(self, cluster_config: dict[str, Any]) -> dict[str, Any]:
        """On nodes that are local processes, `~` in the head's config means the runner's head home."""
        key = cluster_config.get("auth", {}).get("ssh_private_key")
        if self._nodes_local and isinstance(key, str) and key.startswith("~/"):
            with self._lock:
                cluster_config["auth"]["ssh_private_key"] = str(self._private_dir() / "head" / key[2:])
        return cluster_config

    # -- what exists ------------------------------------------------------------------------------------

    def non_terminated_nodes(self, tag_filters: Mapping[str, str]) -> list[str]:
        with self._lock:
            self._refresh()
            return [
                node_id
                for node_id, tags in self._tags.items()
                if all(tags.get(key) == value for key, value in tag_filters.items())
            ]

    def is_running(self, node_id: str) -> bool:
        with self._lock:
            node = self._cached(node_id)
            return node is not None and node.status == NodeStatus.RUNNING

    def is_terminated(self, node_id: str) -> bool:
        with self._lock:
            return self._cached(node_id) is None

    def node_tags(self, node_id: str) -> dict[str, str]:
        with self._lock:
            self._cached(node_id)
            return dict(self._tags.get(node_id, {}))

    # Ray's NodeProvider declares `-> str`, but a node that is gone or has no address yet has none: these
    # return None then, as Ray's AWS provider does for an instance without a private address.
    def internal_ip(self, node_id: str) -> str | None:  # type: ignore[override]  # None: see above
        with self._lock:
            node = self._cached(node_id)
            return node.private_ip if node else None

    def external_ip(self, node_id: str) -> str | None:  # type: ignore[override]  # None: see above
        with self._lock:
            node = self._cached(node_id)
            return (node.public_ip or node.private_ip) if node else None

    def set_node_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        with self._lock:
            self._connect()
            node = self._cached(node_id)
        if (
            tags.get(TAG_RAY_NODE_STATUS) == STATUS_UP_TO_DATE
            and node is not None
            and node.role == NodeRole.HEAD
        ):
            # `ray up`'s updater is done: the head's script starts Ray now. Report the head up to date
            # only once Ray answers, so `ray up` returns a usable cluster (or the head's log). Waited
            # for without the lock, so that an interrupted `ray up` can still shut the cluster down.
            self._wait_for_ray(node)
            self._up_guard.disarm()
        with self._lock:
            self._require_tag_store().set_tags([node_id], tags)
            if node_id in self._tags:
                self._tags[node_id].update({k: str(v) for k, v in tags.items() if v is not None})

    def _wait_for_ray(self, head: NodeInfo) -> None:
        """Until the head is ready for workers, by the builder's rule (see HeadProbe); fails fast if the
        head exits, and gives up when an interrupted `ray up` tears the cluster down."""
        with self._lock:
            session = self._session()
        session.wait_for_head(
            head.node_id,
            time.monotonic() + self.config.build_timeout_s,
            f"Ray on the head of {self.cluster_name} did not answer within "
            f"{self.config.head_node_build_timeout_minutes} minutes",
            abandoned=self._up_guard.abandoned,
        )

    # -- creating nodes ---------------------------------------------------------------------------------

    def create_node(
        self, node_config: dict[str, Any], tags: dict[str, str], count: int
    ) -> dict[str, Any] | None:
        return self.create_node_with_resources_and_labels(node_config, tags, count, {}, {})

    def create_node_with_resources_and_labels(
        self,
        node_config: dict[str, Any],
        tags: dict[str, str],
        count: int,
        resources: dict[str, float],
        labels: dict[str, str],
    ) -> dict[str, Any] | None:
        type_name = tags.get(TAG_RAY_USER_NODE_TYPE, "")
        node_type = self.config.node_types.get(type_name)
        if node_type is None:
            raise SpecError(
                "available_node_types",
                f"node type {type_name!r} is unknown to the provider",
                "run `ray up` again so bootstrap_config records every node type",
            )
        if tags.get(TAG_RAY_NODE_KIND) == NODE_KIND_HEAD:
            self._create_head(type_name, node_type, tags)
        else:
            self._create_workers(type_name, node_type, tags, count)
        return None

    def _create_head(self, type_name: str, node_type: NodeTypeConfig, tags: Mapping[str, str]) -> None:
        """Open a cluster and start its head (which runs the tag store); any failure or Ctrl+C cleans up."""
        with self._launch_lock, self._lock:
            self._connect()
            if self._cluster_id is not None:
                log.info("replacing cluster %s (%s)", self.cluster_name, self._cluster_id)
                self._teardown("replaced by a new ray up")
            port = self.config.head_node_tag_server_port or (
                free_ports(1)[0] if self._nodes_local else DEFAULT_PORT
            )
            options = ClusterOptions(
                name=self.cluster_name,
                namespace=self.config.cluster_namespace,
                tag=self.config.cluster_tag,
                labels={AUTOSCALER_LABEL: "true", TAG_STORE_PORT_LABEL: str(port)},
                lifetime=timedelta(seconds=self.config.lifetime_s),
                head_on_spot_allowed=self.config.head_node_allow_spot,
                max_node_hours=self.config.max_node_hours,
            )
            self._backend.check_plan(options, [_head_plan(type_name, node_type)])  # before anything exists
            session = ClusterSession.open(
                self._backend, options, self.config.ray_auth_mode, lease=self._keep_alive_terms
            )
            handle = session.handle
            self._cluster_id = handle.cluster_id
            self._created_at = time.time()
            self._looked_up = True
            # From here until `ray up` reports the head up to date, an interrupt (Ctrl+C or SIGTERM)
            # or an exit shuts the new cluster down (see unfinished_up.py).
            self._up_guard.arm(self._abandon_unfinished_up)
            try:
                password = secrets.token_urlsafe(32)
                password_file = self._private_dir() / "tag-store.password"
                write_private(password_file, password)
                env = self._head_env(session, type_name, port, password_file, password)
                launch = NodeLaunch(
                    role=NodeRole.HEAD,
                    pool_name=node_type.pool_name,
                    script=self.config.script("head"),
                    env=env,
                    resources=node_type.resources,
                    yellowdog=node_type.yellowdog,
                    set_cloud_instance_id=True,
                )
                pool_id, (node_id,) = session.launch_pool(launch, 1)
                head = self._wait_for_head(node_id, port, password)
                tag_store = self._require_tag_store()
                tag_store.set_meta(
                    {
                        "gcs_port": handle.ports.gcs,
                        "dashboard_port": handle.ports.dashboard,
                        "client_port": handle.ports.client,
                        "lease_port": handle.ports.lease,
                        "head_node_id": node_id,
                        f"pool:{type_name}": pool_id,
                    }
                )
                self._meta = tag_store.get_meta()
                # A second copy on the client, for when its tag store cannot be read (see _connect).
                write_private(self._private_dir() / CLUSTER_FACTS, json.dumps(self._meta))
                tag_store.set_tags([node_id], tags)
                self._nodes = {node_id: head}
                self._tags = {node_id: dict(tags)}
                self._upload_files(node_id)
            except BaseException as error:
                what = "interrupted" if isinstance(error, KeyboardInterrupt) else f"failed ({error})"
                log.error(
                    "creating the head of %s %s: shutting down what was created", self.cluster_name, what
                )
                self._teardown(f"ray up: creating the head {what}")
                self._up_guard.disarm()
                raise
            log.info("head node %s of cluster %s is up", node_id, self.cluster_name)

    def _abandon_unfinished_up(self) -> None:
        """At exit of a `ray up` that never finished (see unfinished_up.py)."""
        self._commands.stop_all(close=True)
        locked = self._lock.acquire(timeout=30)  # Ray's updater thread may still be running
        try:
            self._teardown("ray up did not finish")
        finally:
            if locked:
                self._lock.release()

    def _create_workers(
        self, type_name: str, node_type: NodeTypeConfig, tags: Mapping[str, str], count: int
    ) -> None:
        with self._lock:
            self._connect()
            if self._cluster_id is None:
                raise RayDogError(f"cluster {self.cluster_name} has no head: run `ray up` first")
            head = self._head()
            if head is None:
                raise RayDogError(f"the head of cluster {self.cluster_name} is not running")
            cluster_id = self._cluster_id
            self._fresh_meta()
            session = self._session()
        env = session.node_environment(NodeRole.WORKER, head_ip=head.private_ip)
        env["RAY_NODE_TYPE_NAME"] = type_name
        launch = NodeLaunch(
            role=NodeRole.WORKER,
            pool_name=node_type.pool_name,
            script=self.config.script("worker"),
            env=env,
            resources=node_type.resources,
            yellowdog=node_type.yellowdog,
            set_cloud_instance_id=True,
        )
        with self._launch_lock:
            pool_id = self._fresh_meta().get(f"pool:{type_name}")
            node_ids = None
            if pool_id:
                try:
                    node_ids = self._backend.add_nodes(cluster_id, pool_id, launch, count)
                except PoolGoneError as gone:  # it shut itself down while idle: a new pool takes over
                    log.info("%s: a new pool takes the %s nodes", gone, type_name)
            if node_ids is None:
                pool_id, node_ids = self._backend.create_pool(cluster_id, launch, count)
                self._require_tag_store().set_meta({f"pool:{type_name}": pool_id})
                self._meta[f"pool:{type_name}"] = pool_id
        # The backend starts Ray itself (disable_node_updaters), so the provider reports it up to date.
        self._require_tag_store().set_tags(node_ids, {**tags, TAG_RAY_NODE_STATUS: STATUS_UP_TO_DATE})
        log.info("started %d %s node(s) of cluster %s: %s", count, type_name, self.cluster_name, node_ids)

    # -- removing nodes ---------------------------------------------------------------------------------

    def terminate_node(self, node_id: str) -> dict[str, Any] | None:
        self.terminate_nodes([node_id])
        return None

    def terminate_nodes(self, node_ids: list[str]) -> dict[str, Any] | None:
        with self._lock:
            self._connect()
            if self._cluster_id is None or not node_ids:
                return None
            roles = {n.node_id: n.role for n in self._list_nodes()}
            if any(roles.get(node_id) == NodeRole.HEAD for node_id in node_ids):
                # The whole cluster goes (upstream's behaviour); `ray down` ends clusters this way.
                self._teardown("its head was terminated (ray down)")
                return None
            self._stop_nodes(node_ids)
        return None

    def cleanup_cluster_resources(self) -> None:
        """Called by `ray down` once every node is gone: release the cluster itself."""
        with self._lock:
            self._connect()
            if self._cluster_id is not None:
                self._teardown("shut down by ray down")

    def _stop_nodes(self, node_ids: list[str]) -> None:
        assert self._cluster_id is not None
        self._backend.terminate_nodes(self._cluster_id, node_ids)
        if self._tag_store is not None:
            try:
                self._tag_store.remove(node_ids)
            except TagStoreError as error:  # the head (and its store) may be gone already
                log.debug("tags of %s not removed: %s", node_ids, error)
        for node_id in node_ids:
            self._nodes.pop(node_id, None)
            self._tags.pop(node_id, None)

    def _stop_node_for_runner(self, node_id: str) -> None:
        with self._lock:
            self._connect()
            if self._cluster_id is not None:
                self._stop_nodes([node_id])

    def _teardown(self, reason: str) -> None:
        """Everything of the cluster: tags, nodes, pools, the cluster, its secrets. Idempotent."""
        cluster_id, self._cluster_id = self._cluster_id, None
        self._commands.stop_all()
        if self._tag_store is not None:
            try:
                self._tag_store.clear()
            except TagStoreError:
                pass  # the store lives on the head: gone with it
            self._tag_store.close()
            self._tag_store = None
        if cluster_id is not None:
            failures = self._session(cluster_id, need_ports=False).shut_down(reason=reason)
            for failure in failures:
                log.warning("shut-down of %s: %s", cluster_id, failure)
            shutil.rmtree(self._private_dir(cluster_id), ignore_errors=True)
        self._nodes, self._tags, self._meta = {}, {}, {}
        self._looked_up = False

    # -- command runner ---------------------------------------------------------------------------------

    def get_command_runner(
        self,
        log_prefix: str,
        node_id: str,
        auth_config: dict[str, Any],
        cluster_name: str,
        process_runner: Any,
        use_internal_ip: bool,
        docker_config: dict[str, Any] | None = None,
    ) -> Any:
        if not self._nodes_local:
            return super().get_command_runner(
                log_prefix, node_id, auth_config, cluster_name, process_runner, use_internal_ip, docker_config
            )
        return LocalCommandRunner(
            node_id,
            self._home(node_id),
            self._runner_environment,
            self._stop_node_for_runner,
            self._commands,
            cluster=self._command_cluster,
        )

    def _command_cluster(self) -> tuple[str | None, float | None]:
        """The cluster a command runs for, and how much of its lifetime is left (commands end with it)."""
        with self._lock:
            if self._cluster_id is None:
                return None, None
            started = self._created_at if self._created_at is not None else time.time()
            return self._cluster_id, self.config.lifetime_s - (time.time() - started)

    def _runner_environment(self) -> dict[str, str]:
        with self._lock:
            self._connect()
            if self._cluster_id is None:
                return {"RAY_AUTH_MODE": self.config.ray_auth_mode}
            env = auth.client_environment(self._cluster_id, self.config.ray_auth_mode)
            gcs_port = self._meta.get("gcs_port")
            if gcs_port:
                env["RAY_ADDRESS"] = f"127.0.0.1:{gcs_port}"
            env["RAYDOG_CLUSTER_NAME"] = self.cluster_name
            return env

    def _home(self, node_id: str) -> Path:
        with self._lock:
            self._connect()
            if self._cluster_id is None:
                raise RayDogError(f"cluster {self.cluster_name} does not exist: run `ray up` first")
            node = self._cached(node_id)
            if node is not None and node.role == NodeRole.HEAD:
                return self._private_dir() / "head"
            return self._private_dir() / "nodes" / node_id

    # -- connection to the cluster ----------------------------------------------------------------------

    def _connect(self) -> None:
        """Find this provider's cluster and its tag store, once (caller holds the lock)."""
        if self._looked_up:
            return
        self._looked_up = True
        if self._on_head:
            self._cluster_id = os.environ["RAYDOG_CLUSTER_ID"]
            self._tag_store = TagStore.on_head(
                self.cluster_name,
                int(os.environ["RAYDOG_TAG_STORE_PORT"]),
                os.environ["RAYDOG_TAG_STORE_PASSWORD_FILE"],
            )
            self._meta = self._tag_store.get_meta()
            return
        record = self._find_cluster()
        if record is None:
            return
        self._cluster_id = record.cluster_id
        self._created_at = record.created_at.timestamp()
        head = self._head()
        if head is None:
            if any(n.status == NodeStatus.PENDING and n.role == NodeRole.HEAD for n in self._list_nodes()):
                log.warning("the head of cluster %s is still starting (another `ray up`?)", self.cluster_name)
                return
            log.warning(
                "cluster %s (%s) from an earlier run has no running head: shutting it down",
                self.cluster_name,
                record.cluster_id,
            )
            self._teardown("its head was no longer running")
            self._looked_up = True
            return
        port = int(record.labels.get(TAG_STORE_PORT_LABEL, DEFAULT_PORT))
        try:
            self._tag_store = self._open_tag_store(head, port, self._read_password())
            self._meta = self._tag_store.get_meta()
        except (TagStoreError, RayDogError) as error:
            # Never a reason to tear anything down: the nodes report themselves through the backend.
            log.warning(
                "tag store of cluster %s not reachable, using the backend's view: %s",
                self.cluster_name,
                error,
            )
            self._tag_store = None
        if not self._meta.get("gcs_port"):
            # The store is unreachable or lost its data (Redis restarted): the facts `ray up` kept here
            # still point `ray exec` / `ray submit` at this cluster rather than at a guess of Ray's.
            self._meta = {**self._saved_facts(), **self._meta}

    def _saved_facts(self) -> Tags:
        try:
            return json.loads((self._private_dir() / CLUSTER_FACTS).read_text())
        except (OSError, ValueError):
            return {}

    def _find_cluster(self) -> Any:
        """The cluster of exactly this name, in this namespace, that a RayDog provider created (newest if
        several), unless it was shut down: a cluster of the same name in another namespace is someone
        else's. One that ended by itself (its head died, its idle TTL) is found too, so `ray down` or
        the next `ray up` removes what is left of it, its client-side secrets included."""
        self.backend_calls += 1
        records = [
            r
            for r in self._backend.list_clusters()
            if r.name == self.cluster_name
            and r.namespace == self.config.cluster_namespace
            and r.state in ("running", "ending", "ended")
            and r.labels.get(AUTOSCALER_LABEL) == "true"
        ]
        if len(records) > 1:
            log.warning("%d running clusters named %s: using the newest", len(records), self.cluster_name)
        return max(records, key=lambda r: r.created_at, default=None)

    def _open_tag_store(self, head: NodeInfo, port: int, password: str) -> TagStore:
        via_ssh = self.config.tag_store_via_ssh
        if via_ssh is None:
            via_ssh = not self._backend.capabilities.nodes_reachable
        if not via_ssh:
            store = TagStore(self.cluster_name, port, password, host=head.private_ip or "127.0.0.1")
        else:
            store = TagStore.through_tunnel(
                self.cluster_name,
                port,
                password,
                ray_head_ip_address=head.public_ip or head.private_ip,
                access=self.config.ssh_access(),
            )
        store.ping()
        return store

    def _wait_for_head(self, node_id: str, port: int, password: str) -> NodeInfo:
        """Until the head runs and its tag store answers (Redis starts first in the head's script)."""
        last_error: Exception | None = None

        def look() -> NodeInfo | None:
            nonlocal last_error
            node = next((n for n in self._list_nodes() if n.node_id == node_id), None)
            if node is not None and node.status.is_final:
                raise node_failure(node, "head")
            if node is None or node.status != NodeStatus.RUNNING:
                return None
            try:
                self._tag_store = self._open_tag_store(node, port, password)
            except (TagStoreError, RayDogError) as error:
                last_error = error
                return None
            return node

        def timed_out() -> BuildTimeoutError:
            return BuildTimeoutError(
                f"the head of cluster {self.cluster_name} was not up within "
                f"{self.config.head_node_build_timeout_minutes} minutes ({last_error or 'not running'})"
            )

        return poll_until(look, time.monotonic() + self.config.build_timeout_s, timed_out)

    # -- the node cache ---------------------------------------------------------------------------------

    def _refresh(self) -> None:
        """One backend call for the truth, one tag-store round trip for the tags (caller holds the lock)."""
        self._connect()
        if self._cluster_id is None:
            self._nodes, self._tags = {}, {}
            return
        infos = self._list_nodes()
        live = [n for n in infos if n.role in RAY_NODE_ROLES and not n.status.is_final]
        stored_tags: dict[str, Tags] = {}
        if self._tag_store is not None:
            try:
                stored_tags, with_tags = self._tag_store.read_all(n.node_id for n in live)
                gone = with_tags & {n.node_id for n in infos if n.status.is_final}
                if gone:
                    self._tag_store.remove(gone)
            except TagStoreError as error:
                head_alive = any(n.role == NodeRole.HEAD for n in live)
                (log.warning if head_alive else log.debug)("tag store of %s: %s", self.cluster_name, error)
        self._nodes = {n.node_id: n for n in live}
        self._tags = {n.node_id: {**self._fallback_tags(n), **stored_tags.get(n.node_id, {})} for n in live}

    def _cached(self, node_id: str) -> NodeInfo | None:
        if node_id not in self._nodes:
            self._refresh()
        return self._nodes.get(node_id)

    def _fallback_tags(self, node: NodeInfo) -> Tags:
        """What the backend alone says about a node, for when its tags are missing or unreachable."""
        kind = NODE_KIND_HEAD if node.role == NodeRole.HEAD else NODE_KIND_WORKER
        tags = {TAG_RAY_NODE_KIND: kind}
        pools = {v: k.removeprefix("pool:") for k, v in self._meta.items() if k.startswith("pool:")}
        pools.update({t.pool_name: name for name, t in self.config.node_types.items()})
        if node.pool_id in pools:
            tags[TAG_RAY_USER_NODE_TYPE] = pools[node.pool_id]
        return tags

    def _list_nodes(self) -> list[NodeInfo]:
        assert self._cluster_id is not None
        self.backend_calls += 1
        return self._backend.list_nodes(self._cluster_id)

    def _head(self) -> NodeInfo | None:
        return next(
            (n for n in self._list_nodes() if n.role == NodeRole.HEAD and n.status == NodeStatus.RUNNING),
            None,
        )

    def _fresh_meta(self) -> Tags:
        if not self._meta.get("gcs_port"):
            self._meta = self._require_tag_store().get_meta()
        return self._meta

    def _require_tag_store(self) -> TagStore:
        if self._tag_store is None:
            raise TagStoreError(f"the tag store of cluster {self.cluster_name} is not reachable")
        return self._tag_store

    # -- secrets and files ------------------------------------------------------------------------------

    def _private_dir(self, cluster_id: str | None = None) -> Path:
        """Client-side files of one cluster (0700): the tag store password, local nodes' homes."""
        return private_dir(autoscaler_files(cluster_id or self._cluster_id or "none"))

    def _read_password(self) -> str:
        path = os.environ.get("RAYDOG_TAG_STORE_PASSWORD_FILE") if self._on_head else None
        return read_password(path or self._private_dir() / "tag-store.password")

    def _token(self, cluster_id: str | None = None) -> str | None:
        if self.config.ray_auth_mode != "token":
            return None
        if self._on_head and os.environ.get("RAY_AUTH_TOKEN"):
            return os.environ["RAY_AUTH_TOKEN"]
        cluster_id = cluster_id or self._cluster_id
        assert cluster_id is not None
        return auth.load_token(cluster_id)

    def _session(self, cluster_id: str | None = None, *, need_ports: bool = True) -> ClusterSession:
        """This cluster through the life-cycle layer the builder uses too (ports from the cluster facts;
        only a teardown may go on without them, nodes never get guessed ports)."""
        cluster_id = cluster_id or self._cluster_id
        if cluster_id is None:
            raise RayDogError(f"cluster {self.cluster_name} does not exist: run `ray up` first")
        meta = self._meta
        if meta.get("gcs_port"):
            ports = HeadPorts(
                int(meta["gcs_port"]),
                int(meta["dashboard_port"]),
                int(meta["client_port"]),
                int(meta.get("lease_port") or HeadPorts.lease),
            )
        elif need_ports:
            raise RayDogError(
                f"the ports of cluster {self.cluster_name} are unknown: its tag store lost them"
            )
        else:
            ports = HeadPorts()
        return ClusterSession.attach(
            self._backend,
            ClusterHandle(cluster_id, ports),
            self.cluster_name,
            self.config.ray_auth_mode,
            self._token(cluster_id),
            lease=self._keep_alive_terms,
        )

    @functools.cached_property
    def _keep_alive_terms(self) -> LeaseState | None:
        """`idle_ttl_minutes`, where the head's script starts the watchdog that enforces it."""
        return leases.without_watchdog(self.config.keep_alive, self.config.script("head"), self.cluster_name)

    def _head_env(
        self, session: ClusterSession, type_name: str, port: int, password_file: Path, password: str
    ) -> dict[str, str]:
        env = session.node_environment(NodeRole.HEAD)
        env.update(
            {
                "RAYDOG_CLUSTER_ID": session.cluster_id,
                "RAYDOG_TAG_STORE_PORT": str(port),
                "RAY_enable_autoscaler_v2": "1",
                "RAY_NODE_TYPE_NAME": type_name,
            }
        )
        if self._nodes_local:
            env["RAYDOG_TAG_STORE_PASSWORD_FILE"] = str(password_file)
            env["RAYDOG_AUTOSCALING_CONFIG"] = str(self._private_dir() / "head" / BOOTSTRAP_CONFIG)
            env["RAYDOG_HOME"] = str(raydog_home())
        else:
            env["RAYDOG_TAG_STORE_PASSWORD"] = password  # head.sh moves it to a 0600 file at once
            env["RAYDOG_AUTOSCALING_CONFIG"] = f"~/{BOOTSTRAP_CONFIG}"
        if self.config.autoscaler_update_interval_s:
            env["AUTOSCALER_UPDATE_INTERVAL_S"] = str(self.config.autoscaler_update_interval_s)
        return env

    def _upload_files(self, head_id: str) -> None:
        if not self.config.files_to_upload:
            return
        runner = self.get_command_runner(
            "files_to_upload", head_id, self.config.auth, self.cluster_name, None, False
        )
        for entry in self.config.files_to_upload:
            source, target = (
                (entry, Path(entry).name) if isinstance(entry, str) else (entry.source, entry.target)
            )
            parent = Path(target).parent
            if str(parent) != ".":
                runner.run(f"mkdir -p ~/{parent}")
            runner.run_rsync_up(source, f"~/{target}")


def _head_plan(type_name: str, node_type: NodeTypeConfig) -> PoolPlan:
    """The head as the backend checks it before anything exists (its template: spot is refused unless
    the provider section allows it), with the YAML path that names its template."""
    where = f"available_node_types.{type_name}.node_config"
    return PoolPlan(
        f"{where}.resources",
        1,
        node_type.resources,
        NodeRole.HEAD,
        "head",
        node_type.yellowdog,
        template_field=f"{where}.compute_requirement_template",
    )
