"""Flow hooks that shut down a flow run's cluster when the flow's own process could not.

The task runner tears its cluster down whenever Python code still runs in the flow process. When the
process is killed outright (SIGKILL, OOM, a deleted pod), Prefect's runner or worker notices the crash
and calls the flow's `on_crashed` hooks elsewhere; these hooks find the cluster by its flow-run label
and shut it down. They are idempotent with the runner's teardown: whichever runs second finds nothing
running and says so.

```python
@flow(task_runner=RayDogTaskRunner(cluster="prod"),
      on_crashed=[shut_down_flow_run_cluster], on_cancellation=[shut_down_flow_run_cluster])
```
"""

from __future__ import annotations

from typing import Any

from prefect.client.schemas.objects import FlowRun, State
from prefect.logging.loggers import flow_run_logger

from raydog_core.backends import Backend, create_backend
from raydog_core.reaper import ReapResult, shut_down_labelled
from raydog_prefect.blocks import RayDogClusterConfig
from raydog_prefect.labels import FLOW_RUN_LABEL


def shut_down_flow_run_cluster(flow: Any, flow_run: FlowRun, state: State) -> list[ReapResult]:
    """Flow hook (on_crashed, on_cancellation, on_failure): shut down this flow run's RayDog clusters.

    The backend (and YellowDog credentials) come from the flow's RayDogTaskRunner configuration;
    a flow with another runner is looked up on the local backend.
    """
    logger = flow_run_logger(flow_run=flow_run, flow=flow)
    labels = {FLOW_RUN_LABEL: str(flow_run.id)}
    backend = _backend_of(flow)
    try:
        results = shut_down_labelled(backend, labels)
    finally:
        backend.close()
    if not results:
        logger.info(
            "RayDog: no running cluster of flow run %s (state %s): nothing to shut down, "
            "its task runner already did",
            flow_run.id,
            state.name,
        )
    for result in results:
        if result.failures:
            logger.error(
                "RayDog: shutting down cluster %s of flow run %s left failures: %s",
                result.cluster.name,
                flow_run.id,
                "; ".join(result.failures),
            )
        else:
            logger.info(
                "RayDog: shut down cluster %s (%s) of flow run %s (state %s)",
                result.cluster.name,
                result.cluster.cluster_id,
                flow_run.id,
                state.name,
            )
    return results


def _backend_of(flow: Any) -> Backend:
    from raydog_prefect.task_runner import RayDogTaskRunner

    runner = getattr(flow, "task_runner", None)
    if isinstance(runner, RayDogTaskRunner):
        config: RayDogClusterConfig = runner.load_config()
        return create_backend(config.backend, config.credentials())
    return create_backend("local")
