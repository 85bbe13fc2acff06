"""The examples run for real (they are what users copy first)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "builder"


def run_example(name: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout


def test_grow_and_shrink(local_backend) -> None:
    out = run_example("grow_and_shrink.py")
    assert "on 3 nodes" in out and "on 4 nodes" in out and "shrank to 3 nodes" in out
    assert local_backend.live_resources() == []


def test_elastic_training_spawns_trainers_on_new_nodes(local_backend) -> None:
    out = run_example("elastic_training.py", "--steps", "8", "--grow-every", "2", "--max-pools", "1")
    assert "trainer #1" in out and "trainer #2" in out  # a trainer started on the node that joined
    assert "final loss" in out
    assert local_backend.live_resources() == []
