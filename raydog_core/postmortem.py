"""A post-mortem for every cluster: what its nodes printed and what happened to them, in one archive
that outlives the cluster.

Once a cluster is gone, so is most of what explains its run. Every door that ends a cluster
(`lifecycle.shut_down_cluster`: the builder, `ray down`, Airflow's teardown, the reaper, the tidy of a
cluster that ended by itself) writes one bundle, once per cluster:

- `summary.md`: the cluster, why it ended, and one line per node (role, status, why it failed);
- `nodes.json`: the same, for tools;
- `logs/`: what the backend keeps of its nodes' logs, each file cut to its last `MAX_FILE_BYTES`
  (the local backend: every node's script log and Ray's session logs; YellowDog: each task's errors as
  the platform reports them).

Bundles are written under `$RAYDOG_HOME/post-mortems` (0700, like every file RayDog keeps), the newest
`KEEP` are kept; `raydog_core.postmortem_store` copies them to a URL and deletes old ones by age. Nothing secret is in them: node environments are never logged, and the secret scans of
the test suite open the archives.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tarfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from raydog_core import postmortem_store
from raydog_core.backends.base import Backend, NodeInfo
from raydog_core.home import raydog_home
from raydog_core.private_files import private_dir

log = logging.getLogger("raydog")

MAX_FILE_BYTES = 256 * 1024  # the tail of each log that goes in: the end is where a failure shows
MAX_LOG_BYTES = 32 * 1024 * 1024  # all logs of one bundle, whatever the cluster's size
KEEP = 50  # bundles kept; the oldest go first
SUFFIX = ".tar.gz"


@dataclass(frozen=True)
class PostMortem:
    """A written bundle: where it is and its markdown summary (for a Prefect artifact or a task log)."""

    path: Path
    summary: str
    url: str | None = None  # its copy beyond this machine (RAYDOG_POST_MORTEM_URL), where one is set


def directory() -> Path:
    return raydog_home() / "post-mortems"


def bundle_path(cluster_id: str) -> Path:
    return directory() / f"{cluster_id.replace(':', '_')}{SUFFIX}"


def find(cluster_id: str) -> PostMortem | None:
    """The bundle of a cluster, if one was written on this machine."""
    return read(bundle_path(cluster_id))


def read(path: Path) -> PostMortem | None:
    """A bundle and its summary; None if it is missing or not a bundle."""
    try:
        with tarfile.open(path) as archive:
            member = archive.extractfile("summary.md")
            summary = member.read().decode(errors="replace") if member else ""
    except (OSError, KeyError, tarfile.TarError):
        return None
    return PostMortem(path, summary, postmortem_store.url_of(path.name))


def members(path: Path) -> list[str]:
    with tarfile.open(path) as archive:
        return [m.name for m in archive if m.isfile()]


def extract(path: Path, into: Path) -> None:
    """Extract a bundle; a bundle is a file from outside like any other, so only plain files land, and
    only inside `into` (tarfile's "data" filter)."""
    private_dir(into)
    with tarfile.open(path) as archive:
        archive.extractall(into, filter="data")


def write(backend: Backend, cluster_id: str, ended: str) -> PostMortem | None:
    """The bundle of a cluster that has just ended, written once (a later door finds it there). A
    bundle is a report: failing to write one is logged, never raised."""
    if bundle_path(cluster_id).exists():
        return find(cluster_id)
    try:
        nodes = backend.list_nodes(cluster_id)
    except Exception as error:  # noqa: BLE001 - a cluster the backend does not know: nothing to tell
        log.debug("no post-mortem for cluster %s: %s", cluster_id, error)
        return None
    path = bundle_path(cluster_id)
    try:
        private_dir(path.parent)
        logs = LogBudget()
        with _staging(path) as staging:
            backend.write_node_logs(cluster_id, staging, logs)
            summary = _summary(backend.kind, cluster_id, nodes, ended, logs)
            _write_archive(path, staging, summary, nodes)
        prune(path.parent, KEEP)
    except Exception as error:  # noqa: BLE001 - the cluster is gone either way
        log.warning("could not write the post-mortem of cluster %s: %s", cluster_id, error)
        return None
    url = postmortem_store.publish(path)
    log.info("post-mortem of cluster %s: %s%s", cluster_id, path, f" (copied to {url})" if url else "")
    return PostMortem(path, summary, url)


class LogBudget:
    """What a backend uses to put its nodes' logs into a bundle: the tail of each file, and all of them
    within MAX_LOG_BYTES, so a large cluster's bundle stays a size one can download and open."""

    def __init__(self) -> None:
        self.left = MAX_LOG_BYTES
        self.files = 0
        self.cut = 0  # files cut to their tail
        self.skipped = 0  # files left out once the budget was spent

    def copy_tail(self, source: Path, target: Path) -> None:
        try:
            size = source.stat().st_size
            with source.open("rb") as handle:
                handle.seek(size - self._room(size))
                tail = handle.read(self._room(size))
        except OSError:
            return
        self._write_tail(target, tail, size)

    def write_bytes_tail(self, target: Path, data: bytes) -> None:
        """Like `copy_tail`, for a file already read (from a store)."""
        self._write_tail(target, data[len(data) - self._room(len(data)) :], len(data))

    def _room(self, size: int) -> int:
        return min(size, MAX_FILE_BYTES, max(self.left, 0))

    def _write_tail(self, target: Path, tail: bytes, size: int) -> None:
        if not tail and size > 0:
            self.skipped += 1
            return
        self.left -= len(tail)
        self.files += 1
        if len(tail) < size:
            self.cut += 1
            tail = f"[... {size - len(tail)} earlier bytes left out ...]\n".encode() + tail
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(tail)

    def write_text(self, target: Path, text: str) -> None:
        data = text.encode()[-MAX_FILE_BYTES:]
        self.left -= len(data)
        self.files += 1
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


@contextmanager
def _staging(path: Path) -> Iterator[Path]:
    """A private temporary directory next to the bundle, removed afterwards."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    private_dir(staging)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _summary(kind: str, cluster_id: str, nodes: Sequence[NodeInfo], ended: str, logs: LogBudget) -> str:
    lines = [
        f"# RayDog post-mortem: {cluster_id}",
        "",
        f"- backend: {kind}",
        f"- ended: {ended}",
        f"- written: {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}",
        f"- logs: {logs.files} files"
        + (f", {logs.cut} cut to their last {MAX_FILE_BYTES // 1024} KiB" if logs.cut else "")
        + (f", {logs.skipped} left out (bundle size limit)" if logs.skipped else ""),
        "",
        "| node | role | status | detail |",
        "|---|---|---|---|",
    ]
    for node in nodes:
        detail = " ".join(node.detail.split())[:300].replace("|", "\\|")
        lines.append(f"| {node.node_id} | {node.role.value} | {node.status.value} | {detail} |")
    if not nodes:
        lines.append("| (none) | | | |")
    return "\n".join(lines + _timeline(nodes)) + "\n"


def _timeline(nodes: Sequence[NodeInfo]) -> list[str]:
    """When each node started and ended, in order: what happened when, across pools and replacements."""
    events: list[tuple[datetime, str, str]] = []
    for node in nodes:
        if node.started_at is not None:
            events.append((node.started_at, node.node_id, f"{node.role.value} started"))
        if node.ended_at is not None:
            events.append((node.ended_at, node.node_id, f"{node.role.value} ended ({node.status.value})"))
    if not events:
        return []
    lines = ["", "## Timeline (UTC)", "", "| time | node | event |", "|---|---|---|"]
    for at, node_id, event in sorted(events, key=lambda e: e[0]):
        lines.append(f"| {at.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} | {node_id} | {event} |")
    return lines


def _write_archive(path: Path, staging: Path, summary: str, nodes: Sequence[NodeInfo]) -> None:
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as archive:
        _add_bytes(archive, "summary.md", summary.encode())
        records = [asdict(node) | {"role": node.role.value, "status": node.status.value} for node in nodes]
        _add_bytes(archive, "nodes.json", json.dumps(records, indent=1, default=str).encode())
        for file in sorted(p for p in staging.rglob("*") if p.is_file()):
            archive.add(file, arcname=str(file.relative_to(staging)), recursive=False)
    partial.replace(path)


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(time.time())
    info.mode = 0o600
    archive.addfile(info, io.BytesIO(data))


def prune(folder: Path, keep: int) -> None:
    """Delete all but the `keep` newest bundles in `folder`, and any older than the maximum age."""
    postmortem_store.prune_old_local(folder, SUFFIX)
    bundles = sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in bundles[keep:]:
        old.unlink(missing_ok=True)
