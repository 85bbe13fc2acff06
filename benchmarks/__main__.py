"""Run every benchmark and write one results table (Markdown and JSON) to benchmarks/results/.

python -m benchmarks                 # all
python -m benchmarks cluster_up      # some
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

MODULES = [
    "cluster_up",
    "yellowdog_scaling",
    "autoscaler_update_cost",
    "autoscaler_latency",
    "prefect_overhead",
]
RESULTS = Path(__file__).parent / "results"


def _flatten(prefix: str, value: object, rows: list[tuple[str, str]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, rows)
    else:
        rows.append((prefix, json.dumps(value) if not isinstance(value, str) else value))


def main(selected: list[str]) -> int:
    os.environ.setdefault("RAYDOG_HOME", tempfile.mkdtemp(prefix="raydog-bench-"))
    results: dict[str, object] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
    }
    failed = 0
    for name in selected or MODULES:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            results[name] = module.run()
        except Exception as error:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            results[name] = {"error": f"{type(error).__name__}: {error}"}
            failed += 1
        print(f"   {time.monotonic() - started:.0f} s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    rows: list[tuple[str, str]] = []
    _flatten("", results, rows)
    table = ["| measurement | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    (RESULTS / "results.md").write_text("# Benchmark results\n\n" + "\n".join(table) + "\n")
    print("\n".join(table))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
