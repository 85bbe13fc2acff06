"""YellowDog nodes' own output, kept after their instances are gone.

A node's script output (`taskoutput.txt`) and the tails of its Ray logs (`raydog-node-logs.tar.gz`, which
RayDog's node scripts write into the task's working directory as they stop) live on the instance. The
platform's agent uploads the files a task declares in `Task.data.outputs` when the task ends, also after a
failure (`alwaysUpload`), to a store the YellowDog account can write. RayDog reads them back from there
with this process's own access to the store (its cloud profile or role), for the post-mortem bundle and a
failed node's log tail. The node holds no credential for the store, and RayDog asks for none.

The store is `$RAYDOG_YELLOWDOG_TASK_OUTPUT_URL` (any fsspec URL: `s3://bucket/raydog`, `gs://...`,
`file:///shared/raydog`), read by the process that builds the backend; without it nothing is uploaded and
a bundle has what the API reports of each node. Each node's files go to
`<url>/<work requirement id>/<node>/<file>`.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
from pathlib import Path
from typing import IO

from yellowdog_client.model import TaskData, TaskDataOutput

from raydog_core import stores

log = logging.getLogger("raydog")

URL_ENV = "RAYDOG_YELLOWDOG_TASK_OUTPUT_URL"
TASK_OUTPUT = "taskoutput.txt"
NODE_LOGS = "raydog-node-logs.tar.gz"  # written by the default node scripts (scripts/node_logs.sh)
MAX_ARCHIVE_BYTES = 8 << 20  # a node's log archive larger than this is not opened
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def store_from_environment() -> TaskOutputStore | None:
    """The store `$RAYDOG_YELLOWDOG_TASK_OUTPUT_URL` names, checked now (a typo would lose every node's
    output), or None."""
    url = os.environ.get(URL_ENV, "").strip().rstrip("/")
    if not url:
        return None
    stores.open_store(url, URL_ENV)
    return TaskOutputStore(url)


class TaskOutputStore:
    """Where the platform uploads node tasks' outputs, and how RayDog reads them back."""

    def __init__(self, url: str) -> None:
        self.url = url

    def __repr__(self) -> str:
        return f"TaskOutputStore({self.url!r})"

    def task_data(self, cluster_id: str, node: str) -> TaskData:
        """What a node's task declares: both files, uploaded whether the task succeeded or not."""
        return TaskData(
            outputs=[
                TaskDataOutput(name, self._location(cluster_id, node, name), alwaysUpload=True)
                for name in (TASK_OUTPUT, NODE_LOGS)
            ]
        )

    def read_tail(self, cluster_id: str, node: str, max_bytes: int) -> bytes | None:
        """The last `max_bytes` of a node's uploaded script output (None if nothing was uploaded)."""
        return self._read(self._location(cluster_id, node, TASK_OUTPUT), max_bytes)

    def node_log_files(self, cluster_id: str, node: str) -> dict[str, bytes]:
        """A node's uploaded files, by name: its script output and the Ray log tails from its archive.
        The archive is input from outside: only regular files are read, by their base names, bounded."""
        files: dict[str, bytes] = {}
        output = self._read(self._location(cluster_id, node, TASK_OUTPUT), MAX_ARCHIVE_BYTES)
        if output is not None:
            files[TASK_OUTPUT] = output
        archive = self._read(self._location(cluster_id, node, NODE_LOGS), MAX_ARCHIVE_BYTES, whole=True)
        if archive is not None:
            files.update(_ray_logs(archive, node))
        return files

    def _location(self, cluster_id: str, node: str, name: str) -> str:
        return f"{self.url}/{_UNSAFE.sub('_', cluster_id)}/{_UNSAFE.sub('_', node)}/{name}"

    def _read(self, url: str, max_bytes: int, whole: bool = False) -> bytes | None:
        try:
            fs, path = stores.open_store(url, URL_ENV)
            if not fs.exists(path):
                return None
            size = fs.size(path)
            if whole and size > max_bytes:
                log.warning("node output %s is %d bytes: too large to open", url, size)
                return None
            handle: IO[bytes]
            with fs.open(path, "rb") as handle:
                handle.seek(max(0, size - max_bytes))
                return handle.read(max_bytes)
        except Exception as error:  # noqa: BLE001 - output is for a report: a store that fails is logged
            log.warning("node output %s could not be read: %s", url, error)
            return None


class FailureTails:
    """The last lines each failed node's script wrote, read from the store once it has them."""

    def __init__(self, store: TaskOutputStore) -> None:
        self._store = store
        self._tails: dict[str, str] = {}  # failed node -> the tail of its uploaded output
        self._reads: dict[str, int] = {}  # failed node -> looks in the store that found nothing

    def tail(self, cluster_id: str, node: str, lines: int = 20) -> str:
        """What to add to a failed node's detail: its output's last lines ("" while there are none)."""
        if node not in self._tails:
            data = self._store.read_tail(cluster_id, node, 8192)
            if data is None:  # not uploaded (yet), or never (a lost machine): looked for three times
                self._reads[node] = self._reads.get(node, 0) + 1
                if self._reads[node] < 3:
                    return ""
                data = b""
            tail = "\n".join(data.decode(errors="replace").splitlines()[-lines:])
            self._tails[node] = f"; last lines of its output:\n{tail}" if tail else ""
        return self._tails[node]


def _ray_logs(archive: bytes, node: str) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
            for member in tar:
                name = Path(member.name).name
                if not member.isfile() or not name or name.startswith("."):
                    continue
                extracted = tar.extractfile(member)
                if extracted is not None:
                    files[f"ray/{_UNSAFE.sub('_', name)}"] = extracted.read(MAX_ARCHIVE_BYTES)
    except (tarfile.TarError, OSError, EOFError) as error:
        log.warning("node %s's log archive could not be read: %s", node, error)
    return files
