"""GPU assignment on one machine: each node gets its own GPUs via CUDA_VISIBLE_DEVICES.

Head first, then workers in the order they start, as the local autoscaling seed does. The pure
`assign_gpus` carries the rules, so they are unit-tested on machines without GPUs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

from raydog_core.errors import SpecError


def detect_gpu_ids() -> list[int]:
    """GPUs this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(part) for part in visible.split(",") if part.strip().isdigit()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(line) for line in out.split() if line.strip().isdigit()]


def gpus_wanted(requested: int | None, machine_has_gpus: bool) -> int:
    """A node's GPU count: as requested, or one each when the machine has GPUs and none was given."""
    if requested is not None:
        return requested
    return 1 if machine_has_gpus else 0


GPU_FIX = "use fewer GPU nodes, set num_gpus=0 for CPU-only nodes, or list more ids in gpu_ids"


def check_gpu_plan(machine_gpus: Sequence[int], pools: Sequence[tuple[str, int, int | None]]) -> None:
    """Before any node starts: fail, naming the first pool's field that asks for more GPUs than are left.

    `pools` are (field, node count, GPUs per node or None), head first, in the order nodes start.
    """
    left = len(machine_gpus)
    for field, count, requested in pools:
        wanted = count * gpus_wanted(requested, bool(machine_gpus))
        if wanted > left:
            raise SpecError(
                field,
                f"{count} node(s) need {wanted} GPU(s) but only {left} of the machine's GPUs "
                f"{list(machine_gpus)} are left for them",
                GPU_FIX,
            )
        left -= wanted


def assign_gpus(
    free: Sequence[int], requests: Sequence[int | None], all_gpus: Sequence[int], field: str
) -> list[list[int]]:
    """Hand out GPU ids to nodes in order; fail, naming `field`, if there are not enough.

    `all_gpus` is the machine's list (decides the "one each" default); `free` the ones not yet taken.
    """
    remaining = list(free)
    wanted = [gpus_wanted(r, bool(all_gpus)) for r in requests]
    if sum(wanted) > len(remaining):
        raise SpecError(
            field,
            f"{len(wanted)} node(s) need {sum(wanted)} GPU(s) but only {len(remaining)} of the "
            f"machine's GPUs {list(all_gpus)} are free",
            GPU_FIX,
        )
    assignment = []
    for count in wanted:
        assignment.append(remaining[:count])
        remaining = remaining[count:]
    return assignment
