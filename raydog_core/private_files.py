"""Files and directories only their owner can read: everything RayDog writes under $RAYDOG_HOME.

$RAYDOG_HOME being 0700 already keeps other users out; these make every file 0600 and every directory
0700 as well, so a copied, archived or re-permissioned home (or a path handed to another tool) leaks
nothing. The process umask is never touched: it is process-wide, so changing it in a library call would
race with the user's other threads. Modes are set per call instead, and the processes RayDog starts
(nodes, commands) get `PRIVATE_UMASK` in the child only (`subprocess.Popen(umask=...)`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

PRIVATE_UMASK = 0o077
FILE_MODE = 0o600
DIR_MODE = 0o700


def private_dir(path: Path) -> Path:
    """`path` and any missing parents, each created 0700 (`mkdir -p` would give parents the umask's)."""
    missing = []
    for directory in (path, *path.parents):
        if directory.is_dir():
            break
        missing.append(directory)
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:  # another thread or process made it: make sure of its mode too
            pass
        directory.chmod(DIR_MODE)
    return path


def _open_private(path: Path, flags: int) -> int:
    """A descriptor to `path`, created 0600 and tightened to 0600 if it existed looser."""
    private_dir(path.parent)
    fd = os.open(path, flags | os.O_CREAT, FILE_MODE)
    os.fchmod(fd, FILE_MODE)
    return fd


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` (0600), replacing its content."""
    with os.fdopen(_open_private(path, os.O_WRONLY | os.O_TRUNC), "w") as handle:
        handle.write(text)
    return path


def write_private_new(path: Path, text: str) -> bool:
    """Write `text` to `path` (0600) only if it does not exist yet; False if it did."""
    try:
        fd = _open_private(path, os.O_WRONLY | os.O_EXCL)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


def replace_private(path: Path, text: str) -> Path:
    """Write `text` to `path` (0600) atomically: readers see the old content or the new, never half."""
    tmp = path.with_name(path.name + ".tmp")
    write_private(tmp, text)
    tmp.replace(path)
    return path


def append_private(path: Path) -> BinaryIO:
    """`path` opened for appending bytes (a log), created 0600."""
    return os.fdopen(_open_private(path, os.O_WRONLY | os.O_APPEND), "ab")


def make_tree_private(root: Path) -> None:
    """Tighten everything below `root` (what someone else wrote there, e.g. Ray's moved session logs):
    no group or other bits on any file or directory. Symbolic links are not followed."""
    for path, mode in _modes(root):
        if mode & PRIVATE_UMASK:
            path.chmod(mode & ~PRIVATE_UMASK)


def loose_entries(root: Path) -> list[str]:
    """Files and directories below `root` that group or others may use (for tests and audits)."""
    return [f"{path} ({mode:o})" for path, mode in _modes(root) if mode & PRIVATE_UMASK]


def _modes(root: Path) -> Iterator[tuple[Path, int]]:
    """(path, permission bits) of `root` and everything below it; links and vanished entries skipped
    (os.walk ignores directories that disappear while it walks)."""
    paths = [root]
    for directory, dirs, files in os.walk(root):
        paths += [Path(directory, name) for name in (*dirs, *files)]
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISLNK(info.st_mode):
            yield path, stat.S_IMODE(info.st_mode)
