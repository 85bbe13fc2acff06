"""RayDog for Prefect 3: a Ray cluster for exactly as long as a flow run needs one.

- `RayDogClusterConfig`, `YellowDogCredentials`: Blocks, edited in the UI and loaded by name.
- `RayDogTaskRunner`: prefect-ray's task runner on a cluster built for the flow run, always removed.
- `flow_run_cluster`: connect the flow run's Ray now, for flow code that uses Ray directly.
- `shut_down_flow_run_cluster`: a flow hook for runs whose process was killed outright.
- `remote_options`: prefect-ray's per-submission Ray options (num_cpus, resources, ...).
"""

from prefect_ray.context import remote_options

from raydog_prefect.blocks import RayDogClusterConfig, YellowDogCredentials
from raydog_prefect.hooks import shut_down_flow_run_cluster
from raydog_prefect.labels import FLOW_RUN_LABEL, flow_run_labels
from raydog_prefect.task_runner import RayDogTaskRunner, flow_run_cluster

__all__ = [
    "FLOW_RUN_LABEL",
    "RayDogClusterConfig",
    "RayDogTaskRunner",
    "YellowDogCredentials",
    "flow_run_cluster",
    "flow_run_labels",
    "remote_options",
    "shut_down_flow_run_cluster",
]
