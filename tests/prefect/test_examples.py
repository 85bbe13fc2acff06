"""The Prefect examples run for real, as users (and `make demo`) run them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prefect"


def test_main_job_fans_out_over_the_cluster_and_leaves_nothing(backend) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}  # its own temporary server
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "fan_out.py")], capture_output=True, text=True, env=env, timeout=600
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "pi ~ 3.1" in output and "Ray nodes" in output
    assert "Finished in state Completed()" in output
    assert backend.live_resources() == []
