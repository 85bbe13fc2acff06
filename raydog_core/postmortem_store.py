"""Where post-mortem bundles are kept beyond this machine, and for how long.

A bundle is first written under `$RAYDOG_HOME/post-mortems` (`raydog_core.postmortem`). Two settings,
read from the environment of the process that ends the cluster (the flow run, the Airflow worker, the
`raydog`/`ray` command), say more:

- `RAYDOG_POST_MORTEM_URL`: also copy every bundle there, any fsspec URL (`s3://bucket/raydog`,
  `gs://...`, `file:///shared/post-mortems`). The copy uses this process's own access to that store (its
  cloud profile or role): no credential ever goes to a node, and RayDog asks for none.
- `RAYDOG_POST_MORTEM_MAX_AGE_DAYS`: bundles older than this are deleted, here and at the URL (besides the
  newest-`KEEP` rule for this machine).

A bundle is a report: a store that cannot be reached is logged, never the run's failure. Settings that
make no sense are refused before a cluster is built (`check_settings`).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from raydog_core import limits, stores

log = logging.getLogger("raydog")

URL_ENV = "RAYDOG_POST_MORTEM_URL"
MAX_AGE_ENV = "RAYDOG_POST_MORTEM_MAX_AGE_DAYS"


def check_settings() -> None:
    """Refuse settings that make no sense, before anything exists (a typo'd URL would lose every bundle)."""
    max_age()
    url = destination()
    if url is not None:
        stores.open_store(url, URL_ENV)


def destination() -> str | None:
    return os.environ.get(URL_ENV, "").strip() or None


def max_age() -> timedelta | None:
    days = limits.number_from_environment(
        MAX_AGE_ENV, lambda d: d > 0, "a number of days above 0", "e.g. 30, or unset it"
    )
    return timedelta(days=days) if days is not None else None


def url_of(name: str) -> str | None:
    """Where the bundle called `name` is copied, if a URL is set."""
    url = destination()
    return f"{url.rstrip('/')}/{name}" if url is not None else None


def publish(path: Path) -> str | None:
    """Copy a bundle to the URL (if one is set) and delete bundles there older than the maximum age;
    returns the copy's URL. Logged, never raised, when the store cannot be reached."""
    url = url_of(path.name)
    if url is None:
        return None
    try:
        fs, target = stores.open_store(url, URL_ENV)
        root = target.rsplit("/", 1)[0]
        fs.makedirs(root, exist_ok=True)
        fs.put_file(str(path), target)
        if (age := max_age()) is not None:
            _prune_old(fs, root, age)
    except Exception as error:  # noqa: BLE001 - the bundle is still here; the store is a convenience
        log.warning("post-mortem %s not copied to %s: %s", path.name, url, error)
        return None
    return url


def prune_old_local(folder: Path, suffix: str) -> None:
    """Delete this machine's bundles older than the maximum age, if one is set."""
    age = max_age()
    if age is None:
        return
    cutoff = time.time() - age.total_seconds()
    for bundle in folder.glob(f"*{suffix}"):
        try:
            if bundle.stat().st_mtime < cutoff:
                bundle.unlink()
        except OSError:
            continue


def _prune_old(fs: Any, root: str, age: timedelta) -> None:
    cutoff = time.time() - age.total_seconds()
    for entry in fs.ls(root, detail=False):
        if not str(entry).endswith(".tar.gz"):
            continue
        try:
            modified = fs.modified(entry).timestamp()
        except (NotImplementedError, OSError):
            continue  # a store that keeps no times: its own lifecycle rules apply
        if modified < cutoff:
            fs.rm_file(entry)
