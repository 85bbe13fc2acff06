"""LocalBackend: the embedded default. Every Ray node is a local process session running its script.

A cluster is a directory under `$RAYDOG_HOME/local/` (default `~/.raydog/local/`) holding a locked
manifest, the node logs and each node's home. Any process of the same user can read the manifest and
stop the cluster (`RayDogClusterProxy`, `raydog down`, the reaper), and each cluster has its own free
ports and Ray temp dir, so several clusters and someone else's Ray share one machine safely.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from raydog_core import node_env, processes
from raydog_core.backends.base import (
    BackendCapabilities,
    ClusterHandle,
    ClusterOptions,
    ClusterRecord,
    HeadPorts,
    NodeInfo,
    NodeLaunch,
    NodeRole,
    NodeStatus,
    ObservabilityPorts,
    PoolPlan,
    lifetime_left,
)
from raydog_core.backends.local.gpus import assign_gpus, check_gpu_plan, detect_gpu_ids
from raydog_core.backends.local.manifest import (
    TEMP_PREFIX,
    TEMP_ROOT,
    Manifest,
    ManifestNode,
    ManifestPool,
    ManifestPorts,
)
from raydog_core.errors import RayDogError, StateError
from raydog_core.home import raydog_home
from raydog_core.local_node_args import LOOPBACK, local_node_args
from raydog_core.ports import free_ports
from raydog_core.pricing import ClusterUsage, PlanQuote, PoolQuote, SpendStatus
from raydog_core.private_files import (
    FILE_MODE,
    make_tree_private,
    private_dir,
    replace_private,
    write_private,
)

if TYPE_CHECKING:
    from raydog_core.postmortem import LogBudget

MANIFEST = "cluster.json"
LOG_TAIL_LINES = 20


class LocalBackend:
    """Nodes as local process sessions; see the module docstring."""

    kind = "local"
    capabilities = BackendCapabilities(nodes_reachable=True, nodes_on_client_host=True)

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root else raydog_home() / "local"
        self._children: dict[int, subprocess.Popen[bytes]] = {}  # reaped here, so no zombies linger
        self._lock = threading.Lock()

    # -- clusters ---------------------------------------------------------------------------------

    def check_plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> None:
        """Every node shares this machine's GPUs: refuse pools that would run out of them."""
        gpus = list(options.gpu_ids) if options.gpu_ids is not None else detect_gpu_ids()
        check_gpu_plan(gpus, [(f"{p.field}.num_gpus", p.count, p.resources.num_gpus) for p in pools])

    def plan(self, options: ClusterOptions, pools: Sequence[PoolPlan]) -> PlanQuote:
        """Nodes are processes of this machine: their sizes, at no cost."""
        self.check_plan(options, pools)
        quotes = [PoolQuote(p.pool, p.role.value, p.count, p.resources, "this machine", 0.0) for p in pools]
        return PlanQuote(quotes, currency=None, lifetime=options.lifetime)

    def open_cluster(self, options: ClusterOptions) -> ClusterHandle:
        cluster_id = f"{options.name}-{secrets.token_hex(4)}"
        directory = self.root / cluster_id
        private_dir(self.root)
        directory.mkdir(mode=0o700)  # fails on a (most unlikely) id already taken
        private_dir(directory / "logs")
        # Ray's temp dir must stay short: its Unix sockets live below it (~107-character limit).
        temp_dir = TEMP_ROOT / f"{TEMP_PREFIX}{secrets.token_hex(4)}"
        temp_dir.mkdir(mode=0o700)
        # The observability ports too, though only a cluster with an observability node uses them:
        # the builder hands the same values to that node, the head and the workers.
        gcs, dashboard, client, lease, prometheus, grafana = free_ports(6)
        gpus = list(options.gpu_ids) if options.gpu_ids is not None else detect_gpu_ids()
        manifest = Manifest(
            cluster_id=cluster_id,
            name=options.name,
            namespace=options.namespace,
            labels=dict(options.labels),
            created_at=datetime.now(UTC),
            lifetime_s=options.lifetime.total_seconds() if options.lifetime else None,
            temp_dir=temp_dir,
            ports=ManifestPorts(gcs=gcs, dashboard=dashboard, client=client, lease=lease),
            gpus=gpus,
        )
        self._write(directory, manifest)
        return ClusterHandle(
            cluster_id,
            HeadPorts(gcs, dashboard, client, lease),
            str(directory / "logs"),
            ObservabilityPorts(prometheus, grafana),
        )

    def list_clusters(self) -> list[ClusterRecord]:
        """Every cluster under this root; one whose nodes have all gone by themselves (its head's watchdog
        ended it, or its lifetime did) is marked ended here and its temp dir removed, its logs kept."""
        records = []
        for manifest_path in sorted(self.root.glob(f"*/{MANIFEST}")):
            manifest = self._read(manifest_path.parent)
            if manifest is None:
                continue
            live = sum(1 for n in manifest.nodes.values() if processes.is_ours(n.process))
            if manifest.state == "running" and not live and _has_ended(manifest):
                manifest = self._mark_ended(manifest_path.parent) or manifest
            records.append(
                ClusterRecord(
                    cluster_id=manifest.cluster_id,
                    name=manifest.name,
                    namespace=manifest.namespace,
                    backend=self.kind,
                    labels=manifest.labels,
                    created_at=manifest.created_at,
                    live_nodes=live,
                    state="running" if live else manifest.state,
                    usage=None if live else self._usage(manifest),
                )
            )
        return records

    def usage(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> ClusterUsage:
        """Node-hours from the manifest; local nodes cost nothing."""
        manifest = self._read(self._directory(cluster_id))
        if manifest is None:
            raise StateError(f"local cluster {cluster_id!r} has no readable manifest")
        return self._usage(manifest)

    def spend(self, cluster_id: str) -> SpendStatus | None:
        """Local clusters have no spend cap (the spec refuses one)."""
        return None

    @staticmethod
    def _usage(manifest: Manifest) -> ClusterUsage:
        return ClusterUsage(node_hours=manifest.node_hours(datetime.now(UTC)), cost=0.0)

    def head_ports(self, cluster_id: str) -> HeadPorts | None:
        directory = self.root / cluster_id
        manifest = self._read(directory) if (directory / MANIFEST).is_file() else None
        if manifest is None:  # gone, or never this machine's: nothing to send a token to anyway
            return None
        ports = manifest.ports
        if ports.lease is None:  # a manifest written before leases
            return HeadPorts(ports.gcs, ports.dashboard, ports.client)
        return HeadPorts(ports.gcs, ports.dashboard, ports.client, ports.lease)

    def live_resources(self) -> list[str]:
        leaks = []
        for manifest_path in sorted(self.root.glob(f"*/{MANIFEST}")):
            manifest = self._read(manifest_path.parent)
            refs = [n.process for n in manifest.nodes.values()] if manifest else []
            for proc in processes.session_members(refs):
                leaks.append(
                    f"local process {proc.pid} ({_name(proc)}) of cluster {manifest_path.parent.name}"
                )
        return leaks

    def shut_down(self, cluster_id: str, pool_ids: Sequence[str] = ()) -> list[str]:
        directory = self._directory(cluster_id)
        with self._manifest(directory) as manifest:
            for node in manifest.nodes.values():
                node.stop(_stopped_status(node))  # a node that had already failed stays failed
            manifest.state = "stopped"
            refs = [n.process for n in manifest.nodes.values()]
            temp_dir = manifest.temp_dir
            node_dirs = {n.temp_name: node_id for node_id, n in manifest.nodes.items()}
        failures = processes.stop_sessions(refs)
        self._reap()
        _keep_ray_logs(temp_dir, directory / "logs", node_dirs)
        shutil.rmtree(temp_dir, ignore_errors=True)
        return failures

    def close(self) -> None:
        self._reap()

    # -- pools and nodes --------------------------------------------------------------------------

    def create_pool(self, cluster_id: str, launch: NodeLaunch, count: int) -> tuple[str, list[str]]:
        directory = self._directory(cluster_id)
        pool_id = launch.pool_name
        with self._manifest(directory) as manifest:
            if pool_id in manifest.pools:
                raise RayDogError(f"pool {pool_id!r} already exists in cluster {cluster_id}")
            manifest.pools[pool_id] = ManifestPool(role=launch.role)
        return pool_id, self.add_nodes(cluster_id, pool_id, launch, count)

    def add_nodes(self, cluster_id: str, pool_id: str, launch: NodeLaunch, count: int) -> list[str]:
        directory = self._directory(cluster_id)
        with self._manifest(directory) as manifest:
            if manifest.state != "running":
                raise RayDogError(f"cluster {cluster_id} has been shut down")
            pool = manifest.pools.get(pool_id)
            if pool is None or pool.removed:
                raise RayDogError(f"pool {pool_id!r} does not exist in cluster {cluster_id}")
            taken = {g for ids in manifest.gpu_assigned.values() for g in ids}
            free = [g for g in manifest.gpus if g not in taken]
            role = "head_node" if launch.role == NodeRole.HEAD else "worker_node"
            field = f"{role}_resources.num_gpus"
            gpu_sets = assign_gpus(free, [launch.resources.num_gpus] * count, manifest.gpus, field)
            node_ids = []
            for gpus in gpu_sets:
                node_id = f"{pool_id}-n{manifest.next_node}"
                manifest.next_node += 1
                manifest.gpu_assigned[node_id] = gpus
                manifest.nodes[node_id] = self._start_node(
                    directory, manifest, node_id, pool_id, launch, gpus
                )
                node_ids.append(node_id)
        return node_ids

    def list_nodes(self, cluster_id: str) -> list[NodeInfo]:
        self._reap()
        directory = self._directory(cluster_id)
        manifest = self._read(directory)
        if manifest is None:
            return []
        return [self._info(directory, node_id, node) for node_id, node in manifest.nodes.items()]

    def terminate_nodes(self, cluster_id: str, node_ids: Sequence[str]) -> None:
        directory = self._directory(cluster_id)
        with self._manifest(directory) as manifest:
            refs = []
            for node_id in node_ids:
                node = manifest.nodes.get(node_id)
                if node is None:
                    continue
                node.stop(_stopped_status(node))
                manifest.gpu_assigned.pop(node_id, None)
                refs.append(node.process)
        processes.stop_sessions(refs)
        self._reap()

    def remove_pool(self, cluster_id: str, pool_id: str) -> None:
        directory = self._directory(cluster_id)
        with self._manifest(directory) as manifest:
            pool = manifest.pools.get(pool_id)
            if pool is None:
                return
            pool.removed = True
            node_ids = [nid for nid, n in manifest.nodes.items() if n.pool_id == pool_id]
        self.terminate_nodes(cluster_id, node_ids)

    def node_process(self, cluster_id: str, node_id: str) -> processes.ProcessRef:
        """The process session a node runs in (for fault injection in tests: raydog_core.testing.faults)."""
        manifest = self._read(self._directory(cluster_id))
        node = manifest.nodes.get(node_id) if manifest else None
        if node is None:
            raise RayDogError(f"node {node_id} is not in cluster {cluster_id}")
        return node.process

    def write_node_logs(self, cluster_id: str, into: Path, logs: LogBudget) -> None:
        """Each node's script log, then Ray's session logs kept next to it at shut-down, then the
        manifest (when each node started and ended)."""
        directory = self._directory(cluster_id)
        log_dir = directory / "logs"
        files = sorted(
            (f for f in log_dir.rglob("*") if f.is_file()), key=lambda f: (f.parent != log_dir, str(f))
        )
        for file in files:
            logs.copy_tail(file, into / "logs" / file.relative_to(log_dir))
        logs.copy_tail(directory / MANIFEST, into / "backend" / MANIFEST)

    def node_log_tail(self, cluster_id: str, node_id: str, lines: int = LOG_TAIL_LINES) -> str:
        log = self._directory(cluster_id) / "logs" / f"{node_id}.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- internals --------------------------------------------------------------------------------

    def _start_node(
        self,
        directory: Path,
        manifest: Manifest,
        node_id: str,
        pool_id: str,
        launch: NodeLaunch,
        gpus: list[int],
    ) -> ManifestNode:
        node_dir = directory / "nodes" / node_id
        home = node_dir / "home"
        private_dir(home)
        script_path = node_dir / "taskdata.txt"  # the name the YellowDog agent gives task data
        write_private(script_path, launch.script)
        # Each node its own temp dir and explicit ports: nodes starting at the same moment on one host
        # otherwise race for log file names and for the ports Ray picks itself.
        temp_name = f"n{manifest.next_node - 1}"  # short: Ray's Unix sockets live below it
        temp_dir = manifest.temp_dir / temp_name
        temp_dir.mkdir(mode=0o700)
        args = local_node_args(temp_dir)
        args += node_env.resource_args(launch.resources, len(gpus))
        if launch.role == NodeRole.HEAD:
            ports = HeadPorts(**manifest.ports.model_dump(exclude_none=True))
            args += node_env.head_args(ports, include_dashboard=True, dashboard_host=LOOPBACK)
        env = node_env.clean_environment()
        env.update(launch.env)
        env.update(
            {
                "HOME": str(home),
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
                "RAYDOG_NODE_ID": node_id,
                "RAYDOG_RAY_START_ARGS": " ".join(
                    filter(None, [node_env.join_args(args), launch.env.get("RAYDOG_RAY_START_ARGS")])
                ),
                "CUDA_VISIBLE_DEVICES": ",".join(str(g) for g in gpus),
                "RAY_TMPDIR": str(temp_dir),
            }
        )
        if launch.set_cloud_instance_id:
            env["RAY_CLOUD_INSTANCE_ID"] = node_id
        if launch.role == NodeRole.HEAD and "OBSERVABILITY_HOST" in env:
            # The head's metrics agent, on a port no other node of this machine was promised.
            env.setdefault("RAYDOG_PROMETHEUS_AGENT_PORT", str(free_ports(1)[0]))
        argv = ["bash", str(script_path)]
        if manifest.lifetime_s:
            # The cluster's lifetime, counted from its creation, is enforced by coreutils in every node,
            # with no supervisor of ours, so a client killed with SIGKILL still leaves nothing running for
            # ever and a late worker does not outlive its cluster.
            ends_at = manifest.created_at + timedelta(seconds=manifest.lifetime_s)
            left = lifetime_left(ends_at, manifest.cluster_id)
            argv = ["timeout", "--kill-after=10", str(int(left.total_seconds())), *argv]
        log_path = directory / "logs" / f"{node_id}.log"
        proc, ref = processes.start_session(argv, env, str(home), str(log_path))
        with self._lock:
            self._children[proc.pid] = proc
        return ManifestNode(
            pool_id=pool_id,
            role=launch.role,
            status=NodeStatus.RUNNING,
            process=ref,
            gpus=gpus,
            temp_name=temp_name,
        )

    def _info(self, directory: Path, node_id: str, node: ManifestNode) -> NodeInfo:
        status = node.status
        detail = ""
        if status == NodeStatus.RUNNING and not processes.is_ours(node.process):
            status = NodeStatus.FAILED
        if status == NodeStatus.FAILED:  # its log stays: the reason outlives the process
            tail = self.node_log_tail(directory.name, node_id)
            detail = f"its script exited{self._exit_code(node)}; last lines of its log:\n{tail}"
        return NodeInfo(
            node_id=node_id,
            pool_id=node.pool_id,
            role=node.role,
            status=status,
            private_ip=LOOPBACK,
            public_ip=LOOPBACK,
            detail=detail,
            started_at=node.started_at,
            ended_at=node.ended_at,
        )

    def _exit_code(self, node: ManifestNode) -> str:
        proc = self._children.get(node.process.pid)
        if proc is not None and proc.poll() is not None:
            return f" with code {proc.returncode}"
        return ""

    def _reap(self) -> None:
        with self._lock:
            for proc in self._children.values():
                proc.poll()

    def _directory(self, cluster_id: str) -> Path:
        directory = self.root / cluster_id
        if not (directory / MANIFEST).is_file():
            raise StateError(
                f"no local cluster {cluster_id!r} under {self.root}: it was removed, or the state comes from another machine or RAYDOG_HOME"
            )
        return directory

    def _mark_ended(self, directory: Path) -> Manifest | None:
        """Record that the cluster ended by itself and remove what only its nodes used (logs stay)."""
        with self._manifest(directory) as manifest:
            if manifest.state != "running" or any(
                processes.is_ours(n.process) for n in manifest.nodes.values()
            ):
                return manifest  # someone shut it down, or added a node, meanwhile
            manifest.state = "ended"
            for node in manifest.nodes.values():
                node.stop()
            node_dirs = {n.temp_name: node_id for node_id, n in manifest.nodes.items()}
            _keep_ray_logs(manifest.temp_dir, directory / "logs", node_dirs)
            shutil.rmtree(manifest.temp_dir, ignore_errors=True)
            return manifest

    def _read(self, directory: Path) -> Manifest | None:
        """The manifest, or None when it is missing or not a valid one (listing skips it)."""
        try:
            with FileLock(str(directory / "lock"), mode=FILE_MODE):
                return Manifest.parse((directory / MANIFEST).read_text())
        except (OSError, ValueError):  # a pydantic ValidationError is a ValueError
            return None

    def _write(self, directory: Path, manifest: Manifest) -> None:
        replace_private(directory / MANIFEST, manifest.dump())

    @contextmanager
    def _manifest(self, directory: Path) -> Iterator[Manifest]:
        """Read-modify-write of the manifest under a file lock shared with other processes."""
        with FileLock(str(directory / "lock"), mode=FILE_MODE):
            try:
                manifest = Manifest.parse((directory / MANIFEST).read_text())
            except ValueError as error:
                raise StateError(
                    f"the manifest of local cluster {directory.name} is damaged: {error}"
                ) from None
            yield manifest
            self._write(directory, manifest)


UNSTARTED_GRACE = timedelta(minutes=10)  # a cluster with no node yet is still being built, until this


def _has_ended(manifest: Manifest) -> bool:
    """No node runs: it ended if it ever had a head, or if its builder gave up before starting one."""
    had_head = any(n.role == NodeRole.HEAD for n in manifest.nodes.values())
    return had_head or datetime.now(UTC) - manifest.created_at > UNSTARTED_GRACE


def _stopped_status(node: ManifestNode) -> NodeStatus:
    """How a node RayDog stops now ends: terminated, unless its script had already exited by itself."""
    return NodeStatus.TERMINATED if processes.is_ours(node.process) else NodeStatus.FAILED


def _name(proc: Any) -> str:
    try:
        return proc.name()
    except Exception:  # noqa: BLE001 - the process may be gone by now
        return "?"


def _keep_ray_logs(temp_dir: Path, log_dir: Path, node_dirs: dict[str, str]) -> None:
    """Move each node's Ray session logs next to its script log before the temp dir is deleted."""
    for node_logs in temp_dir.glob("n*/session_*/logs"):
        short = node_logs.parent.parent.name
        target = log_dir / f"{node_dirs.get(short, short)}.ray"
        if not target.exists():
            shutil.move(str(node_logs), str(target))
    make_tree_private(log_dir)  # what the nodes wrote, whatever umask a custom script set
