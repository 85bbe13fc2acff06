"""Files a cluster leaves on this machine after it stopped: part of the leak count.

Counted only for clusters whose files live under the given RAYDOG_HOME (test sessions on one machine
each have their own, and another session's `/tmp/rd-*` dirs are never looked at):

- the temp dir (`/tmp/rd-<hex>`) of a local cluster whose manifest's state is not "running" (stopped,
  or ended by itself);
- secret files of a cluster that is not running: its Ray token (`tokens/`), its observability password
  (`observability/`) and its tag-store password (`autoscaler/<cluster id>/tag-store.password`).

A cluster is running when its local manifest says so or, with an emulator given, when its work
requirement is live there. A secret of a cluster neither local nor known to the given emulator (none
given) cannot be judged, so it is not counted.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from raydog_core.auth import TOKENS
from raydog_core.backends.local.backend import MANIFEST
from raydog_core.backends.local.manifest import is_cluster_temp_dir
from raydog_core.observability.password import PASSWORDS

TAG_STORE_PASSWORD = "tag-store.password"


def leftover_files(home: Path, live_remote_ids: Collection[str] | None = None) -> list[str]:
    """What stopped clusters under `home` left behind; `live_remote_ids` are the live work requirement
    ids of an emulator (None: remote clusters are not judged)."""
    local = _local_clusters(home)
    live = None if live_remote_ids is None else {_file_name(i) for i in live_remote_ids}

    def stopped(cluster_id: str) -> bool:
        name = _file_name(cluster_id)
        if name in local:
            return local[name][0] != "running"
        return live is not None and name not in live

    found = [
        f"temp dir {temp_dir} of local cluster {name} ({state})"
        for name, (state, temp_dir) in local.items()
        if state != "running" and temp_dir is not None and temp_dir.exists()
    ]
    for secrets in (TOKENS, PASSWORDS):
        directory = home / secrets.directory
        files = sorted(directory.iterdir()) if directory.is_dir() else []
        found += [f"{secrets.directory} file {p.name} of a stopped cluster" for p in files if stopped(p.name)]
    found += [
        f"tag-store password of stopped cluster {p.parent.name}"
        for p in sorted(home.glob(f"autoscaler/*/{TAG_STORE_PASSWORD}"))
        if stopped(p.parent.name)
    ]
    return found


def _local_clusters(home: Path) -> dict[str, tuple[str, Path | None]]:
    """{cluster id: (manifest state, its temp dir if it is one the local backend makes)}.

    Read as plain JSON rather than as a `Manifest`, so a state this version does not know yet still
    counts as "not running"."""
    clusters: dict[str, tuple[str, Path | None]] = {}
    for path in home.glob(f"local/*/{MANIFEST}"):
        try:
            data = json.loads(path.read_text())
            state, temp_dir = str(data["state"]), Path(str(data["temp_dir"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        clusters[path.parent.name] = (state, temp_dir if is_cluster_temp_dir(temp_dir) else None)
    return clusters


def _file_name(cluster_id: str) -> str:
    """How a cluster id is spelled in file names (`ClusterSecrets.path`)."""
    return cluster_id.replace(":", "_")
