"""Work needing more CPUs than the head has: the autoscaler starts workers (run with `ray submit`)."""

import time

import ray

ray.init()  # RAY_ADDRESS is set on the head


@ray.remote(num_cpus=2)
def where() -> str:
    time.sleep(2)
    return ray.get_runtime_context().get_node_id()[:8]


nodes = ray.get([where.remote() for _ in range(4)])
print(f"4 tasks ran on {len(set(nodes))} worker node(s)")
