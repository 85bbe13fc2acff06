"""Where RayDog keeps client-side files: $RAYDOG_HOME, default ~/.raydog."""

from __future__ import annotations

import os
from pathlib import Path


def raydog_home() -> Path:
    return Path(os.environ.get("RAYDOG_HOME") or Path.home() / ".raydog").expanduser()
