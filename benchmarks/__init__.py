"""RayDog's benchmarks: each module has `run() -> dict` and measures against an anchor in the same run."""
