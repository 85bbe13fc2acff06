"""Find secrets where they must never be: logs, state files, XCom rows, reprs, exception messages.

Plant known canary values (a YellowDog key secret, a Ray token via $RAYDOG_RAY_AUTH_TOKEN, a Redis
password), run a real flow, then scan what it produced. A hit names the place and the secret's *name*,
never its value, so a failing check does not leak the secret into CI output either.
"""

from __future__ import annotations

import os
import secrets as random_secrets
import tarfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAX_FILE_BYTES = 5 * 1024 * 1024
BINARY_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class SecretHit:
    """`where` is a file path or a label such as "xcom:dag/task/key"; `secret` is the secret's name."""

    where: str
    secret: str

    def __str__(self) -> str:
        return f"{self.secret} found in {self.where}"


def _forms(value: str) -> set[bytes]:
    """The byte forms a secret can take in a file: UTF-8 as is, and its repr()/JSON-escaped spelling."""
    forms = {value.encode()}
    forms.add(value.encode("unicode_escape"))
    return {form for form in forms if form}


def scan_text(where: str, text: str, secrets: Mapping[str, str]) -> list[SecretHit]:
    """Hits of any secret in one string (a repr, a log message, an XCom value)."""
    return [SecretHit(where, name) for name, value in secrets.items() if value and value in text]


def scan_bytes(where: str, data: bytes, secrets: Mapping[str, str]) -> list[SecretHit]:
    """Hits in binary data such as a pickle (what Prefect ships to Ray with every task)."""
    return [
        SecretHit(where, name)
        for name, value in secrets.items()
        if value and any(form in data for form in _forms(value))
    ]


def _is_binary(head: bytes) -> bool:
    return b"\0" in head


def scan_archive(path: Path, secrets: Mapping[str, str]) -> list[SecretHit]:
    """Hits in every file of a tar archive (a post-mortem bundle), named `archive!member`."""
    hits: list[SecretHit] = []
    try:
        with tarfile.open(path) as archive:
            for member in archive:
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is not None:
                    hits += scan_bytes(f"{path}!{member.name}", handle.read(), secrets)
    except (OSError, tarfile.TarError):
        return []
    return hits


def scan_file(path: Path, secrets: Mapping[str, str]) -> list[SecretHit]:
    """Hits in one text file; binaries and files over 5 MB are skipped (Ray's object spill, sqlite pages).
    A tar archive (a post-mortem bundle) is opened and every file in it scanned."""
    if path.name.endswith((".tar.gz", ".tar")):
        return scan_archive(path, secrets)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return []
        data = path.read_bytes()
    except OSError:
        return []  # vanished or unreadable (a socket, a file a process just rotated)
    if _is_binary(data[:BINARY_SNIFF_BYTES]):
        return []
    return [
        SecretHit(str(path), name)
        for name, value in secrets.items()
        if value and any(form in data for form in _forms(value))
    ]


def scan_tree(
    roots: Iterable[str | Path],
    secrets: Mapping[str, str],
    *,
    allowed: Iterable[str | Path] = (),
) -> list[SecretHit]:
    """Hits in every regular text file under `roots` (symlinks not followed).

    `allowed` lists files or directories where a secret is meant to be: the 0600 Ray token file under
    $RAYDOG_HOME/tokens, a tag store password file.
    """
    allowed_paths = [Path(p).resolve() for p in allowed]
    hits: list[SecretHit] = []
    for root in roots:
        for directory, _, files in os.walk(root):
            for name in files:
                path = Path(directory, name)
                if path.is_symlink() or not path.is_file():
                    continue
                resolved = path.resolve()
                if any(resolved == a or a in resolved.parents for a in allowed_paths):
                    continue
                hits.extend(scan_file(path, secrets))
    return hits


def assert_no_secrets(hits: Iterable[SecretHit]) -> None:
    """Fail with the places and secret names (never the values)."""
    found = list(hits)
    if found:
        raise AssertionError("secrets leaked: " + "; ".join(str(hit) for hit in found))


def canary(name: str) -> str:
    """A fresh, unmistakable secret value to plant (`name` only makes hits easy to recognise)."""
    return f"{name}-canary-{random_secrets.token_hex(16)}"


@contextmanager
def emulator_with_key_secret(key_secret: str) -> Iterator[Any]:
    """A YellowDog emulator that accepts only `key_secret`, with the `yellowdog_emulator` fixture's leak
    check and settings (`running_emulator`)."""
    from raydog_core.testing.emulator import Faults
    from raydog_core.testing.emulator_fixtures import running_emulator

    with running_emulator(key_secret=key_secret, faults=Faults(seed=1)) as emulator:
        yield emulator
