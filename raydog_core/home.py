"""Where RayDog keeps client-side files: $RAYDOG_HOME, default ~/.raydog.

It holds token files, tag-store passwords, node scripts and logs, so it is private to the user: the
directory is created 0700 (and tightened to 0700 if it exists looser and is ours), which keeps
everything below it out of other users' reach whatever the modes of the files inside.
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

_checked: set[Path] = set()
_lock = threading.Lock()


def raydog_home() -> Path:
    home = Path(os.environ.get("RAYDOG_HOME") or Path.home() / ".raydog").expanduser()
    with _lock:
        if home not in _checked:
            _make_private(home)
            _checked.add(home)
    return home


def autoscaler_files(cluster_id: str) -> Path:
    """Client-side files of one `ray up` cluster (tag-store password, bootstrap config, node homes),
    directly under $RAYDOG_HOME/autoscaler whatever the id says."""
    if not cluster_id or "/" in cluster_id or cluster_id in (".", ".."):
        raise ValueError(f"cluster id {cluster_id!r} is not a plain identifier")
    return raydog_home() / "autoscaler" / cluster_id


def _make_private(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = home.stat()
    if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
        home.chmod(0o700)
