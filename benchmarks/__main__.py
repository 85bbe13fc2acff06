"""Run every benchmark and write one results table (Markdown and JSON) to benchmarks/results/.

python -m benchmarks                 # all
python -m benchmarks cluster_up      # some (the other figures in results.json are kept)

Benchmarks that need another environment (Airflow cannot share Prefect's) or a long run (the soak)
write their own JSON file next to results.json; their figures are merged into the table.
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

from benchmarks.summary import summary_table

MODULES = [
    "cluster_up",
    "yellowdog_scaling",
    "autoscaler_update_cost",
    "autoscaler_latency",
    "prefect_overhead",
    "autoscaling_timeline",
    "lease_memory",
    "warm_reuse",
]
RESULTS = Path(__file__).parent / "results"
SEPARATE_RESULTS = {"airflow_overhead": "airflow.json", "soak": "soak.json"}


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
    previous = RESULTS / "results.json"
    if selected and previous.exists():  # a partial run updates its own figures and keeps the others
        results = {**json.loads(previous.read_text()), **results}
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
    write(results)
    return 1 if failed else 0


def write(results: dict[str, object]) -> None:
    """results.json and results.md, with the figures of the separately run benchmarks merged in."""
    RESULTS.mkdir(exist_ok=True)
    for name, file_name in SEPARATE_RESULTS.items():
        path = RESULTS / file_name
        if path.exists():  # the latest result of a benchmark run on its own
            data = json.loads(path.read_text())
            results[name] = data.get(name, data)  # wrapped in its name (airflow.json) or not (soak.json)
    (RESULTS / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    rows: list[tuple[str, str]] = []
    _flatten("", results, rows)
    raw = ["| measurement | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]
    summary = summary_table(results)
    (RESULTS / "results.md").write_text(
        f"# Benchmark results\n\n{results['when']}, {results['machine']}\n\n{summary}\n\n"
        "## Every figure\n\n" + "\n".join(raw) + "\n"
    )
    print(summary)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
