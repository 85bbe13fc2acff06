"""Commands RayDog runs on this machine for a cluster, recorded like its nodes.

On nodes that share the client's host (the local backend, YellowDog with `shared_host` placement),
`ray exec`, `ray submit`, `ray attach` and setup commands run as local process sessions. Kept only in
the memory of the `ray` process that started them, they would outlive a killed client and stay
invisible to `raydog down`, `raydog reap` and the leak count. So each one is recorded in a file under
`$RAYDOG_HOME/commands/<cluster id>/` while it runs, bounded by the cluster's lifetime (coreutils'
`timeout`), and stopped with the cluster whoever shuts it down.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from raydog_core import auth, processes
from raydog_core.home import raydog_home
from raydog_core.private_files import write_private

log = logging.getLogger("raydog")
KILL_AFTER_S = 5  # after the lifetime's SIGTERM, SIGKILL


def bounded(argv: list[str], seconds: float | None) -> list[str]:
    """`argv` ended by SIGTERM (then SIGKILL) after `seconds`; unbounded when None."""
    if seconds is None:
        return argv
    return ["timeout", f"--kill-after={KILL_AFTER_S}", str(max(1, math.ceil(seconds))), *argv]


def record(cluster_id: str, ref: processes.ProcessRef) -> Path:
    """Write down a running command of this cluster; returns the record to `forget` when it ends."""
    path = _directory(cluster_id) / f"{ref.pid}-{int(ref.create_time * 1000)}.json"
    return write_private(path, json.dumps(ref.to_dict()))


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)


def live(cluster_id: str | None = None, home: Path | None = None) -> list[tuple[str, processes.ProcessRef]]:
    """(cluster id, process) of every recorded command still running, of one cluster or all of them
    (under `home`, default $RAYDOG_HOME)."""
    root = (home or raydog_home()) / "commands"
    directories = [root / _directory(cluster_id).name] if cluster_id else sorted(root.glob("*"))
    found = []
    for directory in directories:
        for path in sorted(directory.glob("*.json")):
            try:
                ref = processes.ProcessRef.from_dict(json.loads(path.read_text()))
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if processes.session_members([ref]):
                found.append((directory.name, ref))
            else:
                forget(path)  # it ended without its runner noticing (the runner was killed)
    return found


def stop_all(cluster_id: str) -> None:
    """Stop every recorded command of the cluster (idempotent), and drop their records."""
    refs = [ref for _, ref in live(cluster_id)]
    directory = _directory(cluster_id)
    for path in directory.glob("*.json"):
        forget(path)  # first: a runner that sees its record gone knows its command was stopped
    if refs:
        log.info("stopping %d command(s) still running for cluster %s", len(refs), cluster_id)
        processes.stop_sessions(refs)
    if directory.is_dir() and not any(directory.iterdir()):
        directory.rmdir()


def _directory(cluster_id: str) -> Path:
    return raydog_home() / "commands" / auth.token_path(cluster_id).name  # the same plain-id check
