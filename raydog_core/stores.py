"""Stores outside this machine, opened by URL with fsspec (post-mortem copies, YellowDog node output).

A store is reached with this process's own access (its cloud profile or role); RayDog never puts a
credential in a URL, on a node or in state.
"""

from __future__ import annotations

from typing import Any

from raydog_core.errors import SpecError


def open_store(url: str, setting: str) -> tuple[Any, str]:
    """fsspec's file system for `url` and the path in it; a URL fsspec cannot open is the `setting`'s
    error, named with the fix."""
    if "://" in url and "@" in url.split("://", 1)[1].split("/", 1)[0]:
        raise SpecError(
            setting,
            "the URL holds credentials",
            "give the store's URL only (s3://bucket/raydog); its access comes from this process's own "
            "cloud profile or role",
        )
    import fsspec  # only where a URL is set

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        raise SpecError(
            setting, f"{url!r} is not a store fsspec can open: {error}", "e.g. s3://bucket/raydog"
        ) from None
