"""Ray Data: a batch transform (`map_batches`) over a generated dataset, with figures to check by hand.

    python -m raydog_workloads.data_pipeline --rows 10000     # as a Ray job (cwd: this package's parent)

The dataset is the integers 0 .. n-1 (`ray.data.range`); each batch gets their squares. The sums have
closed forms, so the printout says what they must be: sum of id = n(n-1)/2, sum of id^2 =
(n-1)n(2n-1)/6.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import ray

from raydog_workloads import run_as_job, shipped_copy


def add_squares(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One batch: the ids, their squares, and 1 per row if this worker runs the shipped code."""
    ids = batch["id"]
    return {"id": ids, "square": ids * ids, "shipped": np.full(len(ids), int(shipped_copy()))}


def batch_totals(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One row per batch: its row count and sums, for the driver to add up (no shuffle needed)."""
    return {
        "rows": np.array([len(batch["id"])]),
        "sum_id": np.array([batch["id"].sum()]),
        "sum_square": np.array([batch["square"].sum()]),
        "shipped": np.array([batch["shipped"].sum()]),
    }


def run(rows: int = 10_000, blocks: int = 8) -> dict[str, Any]:
    """Transform `rows` generated rows in `blocks` blocks on the cluster; the figures of the result."""
    dataset = (
        ray.data.range(rows, override_num_blocks=blocks)
        .map_batches(add_squares, batch_format="numpy")
        .map_batches(batch_totals, batch_format="numpy")
    )
    totals = {key: 0 for key in ("rows", "sum_id", "sum_square", "shipped")}
    for partial in dataset.iter_rows():
        totals = {key: value + int(partial[key]) for key, value in totals.items()}
    return {
        "rows": totals["rows"],
        "sum_id": totals["sum_id"],
        "sum_square": totals["sum_square"],
        "rows_by_shipped_code": totals["shipped"],
        "expected_sum_id": rows * (rows - 1) // 2,
        "expected_sum_square": (rows - 1) * rows * (2 * rows - 1) // 6,
    }


def report(figures: dict[str, Any]) -> str:
    return (
        f"Ray Data: {figures['rows']} rows; sum of id = {figures['sum_id']} "
        f"(n(n-1)/2 = {figures['expected_sum_id']}); sum of id^2 = {figures['sum_square']} "
        f"((n-1)n(2n-1)/6 = {figures['expected_sum_square']}); "
        f"{figures['rows_by_shipped_code']} rows transformed by code shipped in the runtime_env"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    run_as_job(run, report, rows=parser.parse_args().rows)


if __name__ == "__main__":
    main()
