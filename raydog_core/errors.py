"""Errors RayDog raises: every one says what went wrong and what to do about it."""

from __future__ import annotations


class RayDogError(Exception):
    """Base class for every error RayDog raises on purpose."""


class SpecError(RayDogError, ValueError):
    """Invalid input, raised before any resource exists. Names the field and the fix."""

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)


class InfrastructureError(RayDogError):
    """The platform or a machine failed, not the spec, the node scripts or the user's code: a boot that
    timed out, a machine that was lost. The same run may succeed when retried, so orchestrators' retries
    are for these (raydog_airflow fails the others for good); every other RayDogError would fail again."""


class BuildError(RayDogError):
    """A cluster could not be built; everything created so far has been shut down."""


class BuildTimeoutError(BuildError, InfrastructureError, TimeoutError):
    """The head node did not accept connections in time; the cluster has been shut down."""


class ClusterNameTakenError(RayDogError):
    """The cluster's name is held by a running cluster this client did not create (YellowDog keeps a live
    work requirement's name unique in its namespace)."""


class WarmClusterRaceError(BuildError, InfrastructureError):
    """Another machine created the warm cluster of this reuse key and spec at the same moment as this run
    tried to: nothing was created here, and a retry attaches to that cluster."""


class NoCapacityError(BuildError, InfrastructureError):
    """The platform has no capacity for a pool's machines (every compute source of its template errored,
    e.g. a cloud short of the instance type): the build ends at once, not at its timeout. Everything
    created has been shut down; a retry later, or a template with other sources, may succeed."""


class NodeFailedError(BuildError):
    """A node's start-up script exited; carries the tail of its log."""

    def __init__(self, role: str, node_id: str, detail: str) -> None:
        self.role = role
        self.node_id = node_id
        self.detail = detail
        super().__init__(f"{role} node {node_id} failed: {detail}")


class NodeLostError(NodeFailedError, InfrastructureError):
    """A node's machine went away under it (a spot instance reclaimed, a crash: YellowDog's
    ALLOCATION_LOST), not a failure of its script."""


class PoolGoneError(RayDogError):
    """A worker pool is gone (YellowDog shuts idle pools down): new nodes need a new pool."""


class StateError(RayDogError, ValueError):
    """Saved cluster state is missing, corrupt, stale or from an unknown version."""


class ShutdownError(RayDogError):
    """Shut-down finished but some resources could not be released; lists each failure."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        super().__init__("shut-down left failures: " + "; ".join(failures))


class SpendCapError(RayDogError):
    """The cluster's spend cap (max_node_hours / max_cost) is used up: the platform refuses new nodes
    and has ended the running ones. Not a failure of the user's code, and not worth retrying as is."""


class NodeEndedByCapError(NodeFailedError, SpendCapError):
    """A node the platform ended because the cluster's spend cap was used up."""
