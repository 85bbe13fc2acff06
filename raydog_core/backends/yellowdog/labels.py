"""Cluster labels on YellowDog: carried in the tag of every task group RayDog creates.

The tag marks the work requirement as RayDog's and holds the cluster's labels (a flow-run id, a DAG
run id), so `list_clusters` and the reaper find clusters by label with nothing stored client-side.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from yellowdog_client.model import WorkRequirement

TAG_PREFIX = "raydog:"


def labels_tag(labels: Mapping[str, str]) -> str:
    return TAG_PREFIX + json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def parse_labels_tag(tag: str | None) -> dict[str, str] | None:
    """The labels in a RayDog task group tag, or None when the tag is not RayDog's."""
    if not tag or not tag.startswith(TAG_PREFIX):
        return None
    try:
        labels = json.loads(tag[len(TAG_PREFIX) :])
    except ValueError:
        return None
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else None


def labels_of(requirement: WorkRequirement) -> dict[str, str] | None:
    """The cluster's labels, from the first of its task groups with a RayDog tag; None: not RayDog's."""
    for group in requirement.taskGroups or []:
        labels = parse_labels_tag(group.tag)
        if labels is not None:
            return labels
    return None


def instance_tags(
    cluster_name: str, labels: Mapping[str, str], user_tags: Mapping[str, str] | None
) -> dict[str, str]:
    """Cloud instance tags: the user's, plus the cluster name and labels for cost reports and clean-up."""
    tags = dict(user_tags or {})
    tags["raydog-cluster"] = cluster_name
    tags.update({f"raydog-label-{key}": value for key, value in labels.items()})
    return tags
