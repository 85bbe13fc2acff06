"""The bounds of spec values that pass a type check but would misbehave once nodes run.

Each is checked when a spec is built, before any resource exists, and listed in the README ("Limits").
A value out of bounds raises SpecError naming the field and the fix.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BeforeValidator

from raydog_core.errors import SpecError

# Node scripts run under `timeout <whole seconds>`, where 0 means "no limit", and YellowDog task
# timeouts are minutes to days: a lifetime is at least a minute and at most a month.
MIN_LIFETIME = timedelta(minutes=1)
MAX_LIFETIME = timedelta(days=31)

# No machine has more: a larger memory or object store is a unit mistake (bytes given as MiB).
MAX_MEMORY_MB = 64 * 1024 * 1024  # 64 TiB

# Labels become cloud instance tags ("raydog-label-<key>"): GCP limits label keys to 63 characters,
# AWS tag values to 256.
MAX_LABEL_KEY_LENGTH = 63
MAX_LABEL_VALUE_LENGTH = 255

# Custom resource names travel in `ray start --resources=<json>` inside RAYDOG_RAY_START_ARGS, which node
# scripts expand unquoted: white space would split it and `*`, `?` or `[` would glob against files.
MAX_RESOURCE_NAME_LENGTH = 100
RESOURCE_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]*")
# Ray refuses these as custom resources: they have flags of their own.
RAY_BUILTIN_RESOURCES = {
    "CPU": "num_cpus",
    "GPU": "num_gpus",
    "memory": "memory_mb",
    "object_store_memory": "object_store_mb",
}


def refuse_bool(value: Any) -> Any:
    """YAML's `yes`, a checkbox or a stray `True` must not count as 1 (bool is an int in Python)."""
    if isinstance(value, bool):
        raise SpecError("value", f"{value!r} is not a number", "write a number, e.g. 2")
    return value


NoBool = BeforeValidator(refuse_bool)
"""Metadata for numeric fields (`Annotated[int, NoBool]`): refuses True/False, converts as before."""

Count = Annotated[int, NoBool]


LEASE_TIMEOUT_RANGE = (timedelta(seconds=5), timedelta(days=7))
MAX_WARM_WORKERS = 16
MAX_PRELOAD_MODULES = 32
_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
IDLE_TTL_RANGE = (timedelta(0), timedelta(days=30))


def number_from_environment(
    variable: str, accept: Callable[[float], bool], expected: str, fix: str
) -> float | None:
    """A number a setting takes from the environment; None when unset. Anything that is not a finite
    number `accept` takes is refused naming the variable (`expected`: "a number of days above 0")."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not accept(value):
        raise SpecError(variable, f"{raw!r} is not {expected}", fix)
    return value


def check_duration(field: str, value: timedelta, bounds: tuple[timedelta, timedelta], fix: str) -> timedelta:
    """A duration within `bounds` (inclusive), else an error naming the field, the bounds and a fix."""
    low, high = bounds
    if not low <= value <= high:
        raise SpecError(field, f"must be between {low} and {high}, got {value}", fix)
    return value


def check_lifetime(
    field: str,
    value: timedelta | None,
    fix: str = "e.g. timedelta(hours=2); leave it unset for the default (24 h on YellowDog)",
) -> timedelta | None:
    """A cluster lifetime between MIN_LIFETIME and MAX_LIFETIME (None: the backend's default)."""
    if value is not None and not MIN_LIFETIME <= value <= MAX_LIFETIME:
        raise SpecError(field, f"must be between 1 minute and {MAX_LIFETIME.days} days, got {value}", fix)
    return value


def check_resource_amounts(field: str, resources: Mapping[str, float]) -> dict[str, float]:
    """Custom Ray resources: safe names, finite non-negative amounts."""
    for name, amount in resources.items():
        where = f"{field}[{name!r}]"
        if name in RAY_BUILTIN_RESOURCES:
            raise SpecError(
                where, f"{name!r} is a Ray built-in resource", f"use {RAY_BUILTIN_RESOURCES[name]} instead"
            )
        if len(name) > MAX_RESOURCE_NAME_LENGTH or not RESOURCE_NAME_PATTERN.fullmatch(name):
            raise SpecError(
                where,
                f"{name!r} is not a valid resource name",
                "use letters, digits, '_', '-', '.' and ':', start with a letter or '_', at most "
                f"{MAX_RESOURCE_NAME_LENGTH} characters, e.g. 'special_hardware'",
            )
        if not math.isfinite(amount) or amount < 0:
            raise SpecError(where, f"amount must be a finite number >= 0, got {amount!r}", "e.g. 1")
    return dict(resources)


def check_labels(field: str, labels: Mapping[str, str] | None) -> dict[str, str] | None:
    """Labels and instance tags: short printable keys without white space, short printable values."""
    if labels is None:
        return None
    for key, value in labels.items():
        where = f"{field}[{key!r}]"
        if not key or len(key) > MAX_LABEL_KEY_LENGTH:
            raise SpecError(where, f"a key must have 1 to {MAX_LABEL_KEY_LENGTH} characters", "e.g. 'team'")
        if any(ch.isspace() or not ch.isprintable() for ch in key):
            raise SpecError(
                where, "a key must not hold white space or control characters", "e.g. 'cost-centre'"
            )
        if not value or len(value) > MAX_LABEL_VALUE_LENGTH:
            raise SpecError(
                where,
                f"a value must have 1 to {MAX_LABEL_VALUE_LENGTH} characters, got {len(value)}",
                "give a short, non-empty value",
            )
        if not value.isprintable():
            raise SpecError(where, f"{value!r} holds control characters", "remove newlines and tabs")
    return dict(labels)


def check_module_names(field: str, names: list[str]) -> list[str]:
    """Dotted Python module names, few: Ray joins them with commas onto each worker's command line."""
    if len(names) > MAX_PRELOAD_MODULES:
        raise SpecError(
            field, f"at most {MAX_PRELOAD_MODULES} modules, got {len(names)}", "keep the heavy ones"
        )
    for index, name in enumerate(names):
        if not _MODULE_NAME.fullmatch(name) or len(name) > 200:
            raise SpecError(f"{field}[{index}]", f"{name!r} is not a Python module name", "e.g. 'pandas'")
    return list(names)


def check_gpu_ids(field: str, gpu_ids: list[int] | None) -> list[int] | None:
    """GPU ids are CUDA device indices: non-negative, each once."""
    if gpu_ids is None:
        return None
    negative = [g for g in gpu_ids if g < 0]
    if negative:
        raise SpecError(
            field, f"GPU ids are never negative, got {negative}", "list ids nvidia-smi shows, e.g. [0, 1]"
        )
    duplicates = sorted({g for g in gpu_ids if gpu_ids.count(g) > 1})
    if duplicates:
        raise SpecError(field, f"{duplicates} listed more than once", "list each GPU once")
    return gpu_ids
