"""Elastic training on a growing RayDog cluster (in the spirit of the local autoscaling seed).

The training loop checks for new Ray nodes at every step and starts a training actor on each one that
joins, while this script adds worker pools in the background. Each actor trains a small linear model
on its own shard; the driver averages the weights (synchronous data parallelism). PyTorch is used
when installed (on the node's own GPU when it has one), NumPy otherwise.

    python examples/builder/elastic_training.py --steps 12 --grow-every 4
"""

from __future__ import annotations

import argparse
import logging
import threading
import time

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raydog_core import RayDogCluster

FEATURES = 16


@ray.remote(num_cpus=1)
class Trainer:
    """Holds a data shard and computes gradient steps on it (torch on GPU/CPU when present)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        true_w = np.arange(FEATURES, dtype=np.float64) / FEATURES
        self.x = rng.normal(size=(2048, FEATURES))
        self.y = self.x @ true_w + rng.normal(scale=0.01, size=2048)
        try:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
            self.backend = f"torch/{device}"
            self.x_t = torch.tensor(self.x, device=device)
            self.y_t = torch.tensor(self.y, device=device)
        except ImportError:
            self.backend = "numpy"

    def step(self, weights: np.ndarray, lr: float = 0.1) -> tuple[np.ndarray, float, str]:
        if self.backend.startswith("torch"):
            import torch

            w = torch.tensor(weights, device=self.x_t.device, requires_grad=True)
            loss = torch.mean((self.x_t @ w - self.y_t) ** 2)
            loss.backward()
            new = (w - lr * w.grad).detach().cpu().numpy()
            return new, float(loss), self.backend
        error = self.x @ weights - self.y
        gradient = 2 * self.x.T @ error / len(self.y)
        return weights - lr * gradient, float(np.mean(error**2)), self.backend


def train(cluster: RayDogCluster, steps: int, grow_every: int, max_pools: int) -> float:
    """Train for `steps` steps, growing the cluster as it goes; then keep going (at most two minutes)
    until every node that was asked for has joined and trains too."""
    trainers: dict[str, ray.actor.ActorHandle] = {}
    weights = np.zeros(FEATURES)
    loss = float("inf")
    growers: list[threading.Thread] = []
    deadline = None
    step = 0
    while step < steps or len(trainers) < 1 + len(growers):
        step += 1
        for node in ray.nodes():
            if node["Alive"] and node["NodeID"] not in trainers:
                strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
                trainers[node["NodeID"]] = Trainer.options(scheduling_strategy=strategy).remote(len(trainers))
                print(f"step {step}: new node {node['NodeID'][:8]} -> trainer #{len(trainers)}")
        results = ray.get([t.step.remote(weights) for t in trainers.values()])
        weights = np.mean([w for w, _, _ in results], axis=0)
        loss = float(np.mean([step_loss for _, step_loss, _ in results]))
        print(f"step {step}: {len(trainers)} trainers ({results[0][2]}), loss {loss:.5f}")
        if step % grow_every == 0 and len(growers) < max_pools:
            # Grow in the background: training continues while the new node boots and joins.
            grower = threading.Thread(target=cluster.add_worker_pool, kwargs={"worker_pool_node_count": 1})
            grower.start()
            growers.append(grower)
        if step >= steps:
            deadline = deadline or time.monotonic() + 120
            if time.monotonic() > deadline:
                print("gave up waiting for new nodes to join")
                break
        time.sleep(0.5)
    for grower in growers:
        grower.join()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--grow-every", type=int, default=4)
    parser.add_argument("--max-pools", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    with RayDogCluster(cluster_name="elastic") as cluster:
        cluster.build()
        ray.init(address=cluster.ray_address, log_to_driver=False)
        loss = train(cluster, args.steps, args.grow_every, args.max_pools)
        nodes = len([n for n in ray.nodes() if n["Alive"]])
        ray.shutdown()
    print(f"final loss {loss:.5f} on {nodes} nodes")


if __name__ == "__main__":
    main()
