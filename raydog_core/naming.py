"""YellowDog's naming rules, applied to every name RayDog derives, suffixes included.

The local backend does not need them, but a spec that only works locally would break the day a user
moves it to YellowDog, so both backends validate the same way.
"""

from __future__ import annotations

import re

from raydog_core.errors import SpecError

MAX_NAME_LENGTH = 60
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]*[a-z0-9]$|^[a-z]$")

# Suffixes the backends append to the cluster name ("-head", "-obs", "-w123"): the longest decides
# how long a cluster name may be.
HEAD_SUFFIX = "-head"
OBSERVABILITY_SUFFIX = "-obs"
MAX_WORKER_POOLS = 999
LONGEST_SUFFIX = len(f"-w{MAX_WORKER_POOLS}")
MAX_CLUSTER_NAME_LENGTH = MAX_NAME_LENGTH - LONGEST_SUFFIX
MAX_REUSE_KEY_LENGTH = 40
# A warm (reusable) cluster's name ends with the digest of its reuse key and spec ("-r" + 8 hex digits),
# so clusters of different specs never share a name, and on YellowDog never a work requirement.
WARM_SUFFIX_LENGTH = len("-r") + 8


def worker_pool_suffix(index: int) -> str:
    """Suffix of the index-th worker pool's resource names (1-based, stable for a cluster's life)."""
    return f"-w{index}"


def check_name(field: str, value: str, max_length: int = MAX_NAME_LENGTH) -> str:
    """Raise SpecError unless `value` is a valid YellowDog name of at most `max_length` characters."""
    if not isinstance(value, str) or not value:
        raise SpecError(field, "must be a non-empty string", "for example 'my-cluster'")
    if len(value) > max_length:
        raise SpecError(
            field,
            f"{value!r} is {len(value)} characters long, at most {max_length} are allowed",
            "RayDog appends suffixes such as '-w12' and YellowDog limits names to 60 characters",
        )
    if not NAME_PATTERN.fullmatch(value):  # `$` alone would let a trailing newline through
        raise SpecError(
            field,
            f"{value!r} is not a valid name",
            "use lower-case letters, digits, '-' and '_', start with a letter and end with a letter "
            f"or digit, e.g. {suggest_name(value)!r}",
        )
    return value


def suggest_name(value: str) -> str:
    """A valid name close to `value`, offered in error messages and used for derived names."""
    name = re.sub(r"[^a-z0-9_-]+", "-", str(value).lower()).strip("-_")
    if not name or not name[0].isalpha():
        name = "c-" + name
    return name[:MAX_CLUSTER_NAME_LENGTH].rstrip("-_") or "cluster"


# YellowDog backend: names derived inside one work requirement. A task group is named after its pool
# without the cluster prefix ("head", "w3"), plus "-g<n>" for a later generation of the same pool
# (a finished group takes no more tasks); a node (task) adds "-" and 6 hex digits to its group's name.
GROUP_GENERATION_SUFFIX = "-g"
NODE_SUFFIX_HEX_DIGITS = 6


def task_group_name(cluster_name: str, pool_name: str, generation: int = 1) -> str:
    """The task group of a pool in its cluster's work requirement, e.g. ('demo', 'demo-w3', 2) -> 'w3-g2'."""
    short = pool_name.removeprefix(cluster_name + "-") or pool_name
    name = short if generation <= 1 else f"{short}{GROUP_GENERATION_SUFFIX}{generation}"
    return check_name("task group name", name[: MAX_NAME_LENGTH - NODE_SUFFIX_HEX_DIGITS - 1].rstrip("-_"))


def node_name(group_name: str, token: str) -> str:
    """A node's (task's) name: its group's name and a random hex token, unique in the cluster."""
    return check_name("node name", f"{group_name}-{token[:NODE_SUFFIX_HEX_DIGITS]}")
