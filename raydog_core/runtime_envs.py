"""Ray runtime environments in a spec: what ships a run's code to the cluster's workers.

A spec's `runtime_env` applies to every Ray driver RayDog connects for the cluster: a Prefect flow
run's, an Airflow job's (it travels in the cluster's state). It is kept in plain text (Blocks, spec
files, DAGs, saved state, Ray's dashboard), so it is checked before anything exists: plain JSON, Ray's
keys, local paths that exist, string environment variables, none named like a secret.
"""

from __future__ import annotations

import difflib
import itertools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raydog_core.errors import SpecError

# The runtime_env keys Ray 2.60 accepts (RuntimeEnv's arguments and known_fields, without its private
# `_` ones); tests/core/test_bad_specs.py checks the list against the installed Ray.
RUNTIME_ENV_KEYS = (
    "working_dir",
    "py_modules",
    "py_executable",
    "pip",
    "uv",
    "conda",
    "env_vars",
    "excludes",
    "config",
    "container",
    "image_uri",
    "nsight",
    "rocprof_sys",
    "worker_process_setup_hook",
    "java_jars",
)
MAX_RUNTIME_ENV_BYTES = 64 * 1024  # it travels in saved state, Blocks and every driver's job config
_SECRET_NAME_PARTS = frozenset({"TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "CREDENTIALS"})
_SECRET_NAME_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "APIKEY")
# A KEY is a secret in these company only (SORT_KEY, SSH_KEY_PATH, CACHE_KEY_PREFIX are not).
_SECRET_KEY_KINDS = frozenset({"API", "ACCESS", "PRIVATE", "SECRET", "SIGNING", "ENCRYPTION", "AUTH"})


def check_runtime_env(
    runtime_env: dict[str, Any], field: str = "runtime_env", check_paths: bool = True
) -> dict[str, Any]:
    """A Ray runtime_env that Ray will take and that is safe to keep: plain JSON, known keys, local paths
    that exist (`check_paths`: not in saved state, read on another machine than the spec's), string
    environment variables, none named like a secret."""
    try:
        text = json.dumps(runtime_env, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise SpecError(
            field, f"is not plain JSON: {error}", "use strings, numbers, lists and mappings only"
        ) from None
    if len(text) > MAX_RUNTIME_ENV_BYTES:
        raise SpecError(
            field,
            f"is {len(text)} bytes of JSON, more than {MAX_RUNTIME_ENV_BYTES}",
            "ship files, not values",
        )
    for key, value in runtime_env.items():
        where = f"{field}[{key!r}]"
        if key not in RUNTIME_ENV_KEYS:
            close = difflib.get_close_matches(key, RUNTIME_ENV_KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise SpecError(
                where, "not a Ray runtime_env key", f"{hint}Ray's keys: {', '.join(RUNTIME_ENV_KEYS)}"
            )
        if key == "working_dir" and check_paths:
            _check_local_path(where, value)
        elif key == "py_modules" and check_paths:
            if not isinstance(value, list):
                raise SpecError(where, f"must be a list of paths or URIs, got {value!r}", "e.g. ['./my_pkg']")
            for index, module in enumerate(value):
                _check_local_path(f"{where}[{index}]", module)
        elif key == "env_vars":
            _check_env_vars(where, value)
    return runtime_env


def _check_local_path(where: str, value: Any) -> None:
    """A working_dir or py_modules entry: a remote URI (uploaded by nobody) or a local path that exists."""
    if not isinstance(value, str) or not value:
        raise SpecError(
            where, f"must be a path or a URI, got {value!r}", "e.g. './src' or 's3://bucket/code.zip'"
        )
    if "://" not in value and not Path(value).exists():
        raise SpecError(
            where,
            f"{value!r} does not exist here (a relative path is relative to the current directory)",
            "give an existing directory or .zip file, or a URI such as 's3://bucket/code.zip'",
        )


def _check_env_vars(where: str, env_vars: Any) -> None:
    if not isinstance(env_vars, dict):
        raise SpecError(
            where, f"must be a mapping of names to strings, got {env_vars!r}", "e.g. {'MODE': 'fast'}"
        )
    for name, value in env_vars.items():
        if not name or "=" in name or "\x00" in name:
            raise SpecError(f"{where}[{name!r}]", "is not an environment variable name", "e.g. 'MODE'")
        if not isinstance(value, str):
            raise SpecError(
                f"{where}[{name!r}]", f"must be a string, got {value!r}", f"quote it: {str(value)!r}"
            )
        parts = re.split(r"[^A-Z0-9]+", name.upper())
        secret_key = any(
            kind in _SECRET_KEY_KINDS and following == "KEY" for kind, following in itertools.pairwise(parts)
        )
        if secret_key or any(
            part in _SECRET_NAME_PARTS or part.endswith(_SECRET_NAME_ENDINGS) for part in parts
        ):
            raise SpecError(
                f"{where}[{name!r}]",
                "looks like a secret: a spec is kept in plain text (Blocks, spec files, DAGs, Ray's dashboard)",
                "keep secrets in a Prefect Secret Block or an Airflow connection, and read them in the code",
            )


def merged_runtime_env(base: Mapping[str, Any] | None, own: Mapping[str, Any] | None) -> dict[str, Any]:
    """A driver's runtime_env: the cluster spec's (`base`), with the driver's own over it key by key;
    their `env_vars` are merged (the driver's win)."""
    merged = {**(base or {}), **(own or {})}
    if base and own and "env_vars" in base and "env_vars" in own:
        merged["env_vars"] = {**base["env_vars"], **own["env_vars"]}
    return merged
