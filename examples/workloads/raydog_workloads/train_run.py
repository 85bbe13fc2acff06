"""Ray Train: data-parallel training on CPU, two workers, numpy only (no PyTorch download).

    python -m raydog_workloads.train_run     # as a Ray job (cwd: this package's parent)

A linear model y = x.w + b is fitted by gradient descent to rows generated with w = (2, -3), b = 0.5
and no noise, so the learned weights must come out as those and the loss near zero. Ray Train's
`DataParallelTrainer` starts the workers; each takes every second row, and each step their gradients
are averaged by a small actor (an all-reduce: Ray Train's own collectives need PyTorch). The first
worker saves the model as the run's checkpoint, which the driver reads back.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import ray
import ray.train
from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

from raydog_workloads import run_as_job, shipped_copy

TRUE_W = (2.0, -3.0)
TRUE_B = 0.5
WORKERS = 2
MODEL_FILE = "model.npz"


def make_rows(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The same rows on every worker (a seeded generator): features and exact targets."""
    x = np.random.default_rng(seed).normal(size=(rows, len(TRUE_W)))
    return x, x @ np.array(TRUE_W) + TRUE_B


@ray.remote(num_cpus=0)
class Averager:
    """All-reduce for small vectors: each of `world` workers sends its vector of a step and gets back
    the mean of all of them once every worker has sent one."""

    def __init__(self, world: int) -> None:
        self.world = world
        self.steps: dict[int, tuple[list[np.ndarray], asyncio.Event]] = {}

    async def mean(self, step: int, vector: np.ndarray) -> np.ndarray:
        vectors, done = self.steps.setdefault(step, ([], asyncio.Event()))
        vectors.append(vector)
        if len(vectors) == self.world:
            done.set()
            self.steps.pop(step - 1, None)  # every worker has moved past the step before
        await done.wait()
        return np.mean(vectors, axis=0)


def train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: gradient descent on its shard, gradients averaged over all workers; the
    first worker saves the model as the run's checkpoint."""
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    x, y = make_rows(config["rows"])
    x, y = x[rank::world], y[rank::world]
    w, b, loss = np.zeros(x.shape[1]), 0.0, float("nan")
    for epoch in range(config["epochs"]):
        error = x @ w + b - y
        local = np.concatenate([2 * x.T @ error / len(y), [2 * error.mean(), np.mean(error**2)]])
        mean = ray.get(config["averager"].mean.remote(epoch, local))
        w, b, loss = w - config["lr"] * mean[:-2], b - config["lr"] * mean[-2], float(mean[-1])
    metrics = {"epochs": config["epochs"], "loss": loss, "shipped": int(shipped_copy())}
    with tempfile.TemporaryDirectory(prefix="raydog-model-") as model_dir:
        checkpoint = None
        if rank == 0:
            np.savez(Path(model_dir) / MODEL_FILE, w=w, b=b)
            checkpoint = ray.train.Checkpoint.from_directory(model_dir)
        ray.train.report(metrics, checkpoint=checkpoint)  # Ray Train keeps the metrics of checkpoints


def run(rows: int = 2_000, epochs: int = 60, storage_path: str | None = None) -> dict[str, Any]:
    """Train on the cluster and read the model back from the run's checkpoint; Ray Train keeps it under
    `storage_path` (default: a temporary directory, removed after: on nodes of their own, give a store
    every node reaches, e.g. s3://bucket/train)."""
    averager = Averager.remote(WORKERS)
    try:
        with tempfile.TemporaryDirectory(prefix="raydog-train-") as scratch:
            trainer = DataParallelTrainer(
                train_loop,
                train_loop_config={"rows": rows, "epochs": epochs, "lr": 0.1, "averager": averager},
                scaling_config=ray.train.ScalingConfig(num_workers=WORKERS),
                run_config=ray.train.RunConfig(name="raydog-train", storage_path=storage_path or scratch),
            )
            result = trainer.fit()
            assert result.checkpoint is not None and result.metrics is not None
            with result.checkpoint.as_directory() as model_dir:
                model = np.load(Path(model_dir) / MODEL_FILE)
                w, b = model["w"], float(model["b"])
    finally:
        ray.kill(averager)
    return {
        "workers": WORKERS,
        "epochs": result.metrics["epochs"],
        "loss": result.metrics["loss"],
        "w": [round(float(v), 4) for v in w],
        "b": round(b, 4),
        "shipped": bool(result.metrics["shipped"]),
    }


def report(figures: dict[str, Any]) -> str:
    return (
        f"Ray Train: {figures['workers']} workers, {figures['epochs']} epochs; final loss "
        f"{figures['loss']:.2e}; learned w = {figures['w']}, b = {figures['b']} (the data was made with "
        f"w = {list(TRUE_W)}, b = {TRUE_B}); workers ran code shipped in the runtime_env: {figures['shipped']}"
    )


def main() -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    run_as_job(run, report)


if __name__ == "__main__":
    main()
