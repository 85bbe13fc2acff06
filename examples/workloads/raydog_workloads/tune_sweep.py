"""Ray Tune: a small grid sweep over a closed-form objective, whose best point is known in advance.

    python -m raydog_workloads.tune_sweep     # as a Ray job (cwd: this package's parent)

score(x, y) = (x - 2.5)^2 + (y + 1)^2 over x in {1, 3}, y in {-1, 1}: four trials, one per node CPU at
a time; the best is x=3, y=-1 with score 0.25.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from ray import tune

from raydog_workloads import run_as_job, shipped_copy

GRID = {"x": [1, 3], "y": [-1, 1]}


def score(x: float, y: float) -> float:
    return (x - 2.5) ** 2 + (y + 1) ** 2


def objective(config: dict[str, Any]) -> None:
    """One trial, in a Ray worker: its score, and whether the worker runs the shipped code."""
    tune.report({"score": score(config["x"], config["y"]), "shipped": int(shipped_copy())})


def run(storage_path: str | None = None) -> dict[str, Any]:
    """Run the sweep; results go under `storage_path` (default: a temporary directory, removed after:
    on nodes of their own, give a store every node reaches, e.g. s3://bucket/tune)."""
    with tempfile.TemporaryDirectory(prefix="raydog-tune-") as scratch:
        tuner = tune.Tuner(
            objective,
            param_space={name: tune.grid_search(values) for name, values in GRID.items()},
            tune_config=tune.TuneConfig(metric="score", mode="min"),
            run_config=tune.RunConfig(name="raydog-sweep", storage_path=storage_path or scratch, verbose=0),
        )
        results = tuner.fit()
        best = results.get_best_result()
        return {
            "trials": len(results),
            "errors": results.num_errors,
            "best_config": {name: best.config[name] for name in GRID},
            "best_score": float(best.metrics["score"]),
            "trials_by_shipped_code": sum(int(result.metrics["shipped"]) for result in results),
        }


def report(figures: dict[str, Any]) -> str:
    best = figures["best_config"]
    return (
        f"Ray Tune: {figures['trials']} trials, {figures['errors']} errors; best config x={best['x']}, "
        f"y={best['y']} with score {figures['best_score']:.4f} (expected x=3, y=-1, score 0.2500); "
        f"{figures['trials_by_shipped_code']} trials ran code shipped in the runtime_env"
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    run_as_job(run, report)


if __name__ == "__main__":
    main()
