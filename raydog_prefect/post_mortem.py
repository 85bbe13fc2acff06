"""A cluster's post-mortem on the flow run's page: its summary as a markdown artifact, with where the
bundle is and how to open it (`raydog logs`). Written after the cluster is gone, so it explains a run
whose cluster failed to build, was cut short, or simply ended."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactCreate

from raydog_core.cluster import RayDogCluster

ARTIFACT_KEY = "raydog-post-mortem"


def attach_post_mortem(cluster: RayDogCluster, flow_run_id: str | None, logger: Any) -> None:
    """The bundle's summary on the flow run (named explicitly: the runner tears the cluster down as
    the run's context closes); nothing without a flow run or a bundle. A failure is logged, never the
    run's."""
    bundle = cluster.post_mortem
    if bundle is None or flow_run_id is None:
        return
    markdown = (
        f"{bundle.summary}\nBundle: [{bundle.path.name}]({bundle.path.as_uri()}) on the machine that ran "
        f"the flow; list or extract it with `raydog logs {bundle.path}`.\n"
    )
    if bundle.url is not None:
        markdown += f"\nA copy: [{bundle.url}]({bundle.url}).\n"
    try:
        with get_client(sync_client=True) as client:
            client.create_artifact(
                ArtifactCreate(
                    key=ARTIFACT_KEY,
                    type="markdown",
                    data=markdown,
                    description=f"Post-mortem of RayDog cluster {cluster.spec.cluster_name} ({cluster.cluster_id})",
                    flow_run_id=UUID(flow_run_id),
                )
            )
    except Exception as error:  # noqa: BLE001 - the report is a convenience
        logger.warning("Could not attach the post-mortem of the RayDog cluster to the flow run: %s", error)
        return
    logger.info("Post-mortem of RayDog cluster %s: %s", cluster.spec.cluster_name, bundle.path)
