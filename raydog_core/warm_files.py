"""What this machine keeps of its warm clusters: each one's saved state (no secret in it), by name,
under $RAYDOG_HOME/warm, beside the lock that serialises its creation (see `raydog_core.reuse`)."""

from __future__ import annotations

from pathlib import Path

from raydog_core import naming
from raydog_core.errors import SpecError, StateError
from raydog_core.home import raydog_home
from raydog_core.private_files import private_dir, replace_private
from raydog_core.state import ClusterState


def warm_dir() -> Path:
    return private_dir(raydog_home() / "warm")


def state_file(cluster_name: str) -> Path:
    return warm_dir() / f"{naming.check_name('cluster_name', cluster_name)}.json"


def lock_file(cluster_name: str) -> Path:
    return warm_dir() / f"{naming.check_name('cluster_name', cluster_name)}.lock"


def remember(state: ClusterState) -> None:
    """Keep the state of a warm cluster just built, for the next run with its key."""
    replace_private(state_file(state.cluster_name), state.to_json())


def saved_state(cluster_name: str) -> ClusterState | None:
    """The state kept of the warm cluster of this name, if readable; input like any saved state."""
    try:
        return ClusterState.from_json(state_file(cluster_name).read_text())
    except (OSError, StateError, SpecError):
        return None


def forget(cluster_name: str, cluster_id: str) -> None:
    """A warm cluster that is over: no later run looks for it (a newer one of its name stays known)."""
    state = saved_state(cluster_name)
    if state is None or state.cluster_id == cluster_id:
        state_file(cluster_name).unlink(missing_ok=True)


def forget_cluster(cluster_id: str) -> None:
    """Whichever warm cluster had this id: called whenever a cluster is over, by whatever door."""
    for path in warm_dir().glob("*.json"):
        state = saved_state(path.stem)
        if state is not None and state.cluster_id == cluster_id:
            path.unlink(missing_ok=True)
