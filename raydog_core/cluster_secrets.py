"""Per-cluster secrets the client keeps: one 0600 file per cluster in a directory of $RAYDOG_HOME.

The Ray token (`tokens/`) and the observability password (`observability/`) live the same way: written
only here and into the nodes' task environment, read by this user's other processes (a proxy, `raydog
status`, an Airflow task), deleted when the cluster is shut down, never in state, logs or reprs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from raydog_core.errors import StateError
from raydog_core.home import raydog_home
from raydog_core.private_files import write_private, write_private_new

_PLAIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")


@dataclass(frozen=True)
class ClusterSecrets:
    """The secret files of one kind, directly under `$RAYDOG_HOME/<directory>`."""

    directory: str

    def path(self, cluster_id: str) -> Path:
        """Always directly under the kind's directory, whatever the id says."""
        name = cluster_id.replace(":", "_")
        if not _PLAIN_ID.fullmatch(name):
            raise StateError(f"cluster id {cluster_id!r} is not a plain identifier")
        return raydog_home() / self.directory / name

    def save(self, cluster_id: str, secret: str) -> Path:
        return write_private(self.path(cluster_id), secret)

    def load(self, cluster_id: str) -> str | None:
        try:
            return self.path(cluster_id).read_text().strip() or None
        except OSError:
            return None

    def load_or_create(self, cluster_id: str, new: str) -> str:
        """The cluster's secret; `new` becomes it if there is none yet (first writer wins)."""
        write_private_new(self.path(cluster_id), new)
        secret = self.load(cluster_id)
        if secret is None:
            raise StateError(f"the {self.directory} file of cluster {cluster_id} is empty or unreadable")
        return secret

    def delete(self, cluster_id: str) -> None:
        self.path(cluster_id).unlink(missing_ok=True)

    def cluster_ids(self) -> list[str]:
        """The clusters that have a file here. A YellowDog id (`ydid:...`, which holds no `_`) is stored
        with `_` for `:`; a local id holds no `:`."""
        directory = raydog_home() / self.directory
        names = sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []
        return [name.replace("_", ":") if name.startswith("ydid_") else name for name in names]
