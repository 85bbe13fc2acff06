"""Finding the live warm cluster a builder with a reuse_key attaches to instead of building one: the
one this machine's saved state names, else one another machine built, found on the platform. Both the
search and the build that follows when there is none happen under the key's lock, so that parallel runs
with one key build one cluster.

The two are handled differently on failure: a warm cluster this machine remembers but cannot attach to
is dead or ending, and is shut down to make way for a new one; one built elsewhere is someone else's and
may be healthy, so a failure to attach to it is raised and the cluster left alone. What attaching does to
the builder itself (its session, state, pools and lease) stays with the builder: the `adopt` it passes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from raydog_core import auth, leases, reuse, warm_files
from raydog_core.backends import Backend
from raydog_core.errors import BuildTimeoutError, ClusterNameTakenError, RayDogError, WarmClusterRaceError
from raydog_core.lifecycle import poll_until
from raydog_core.spec import ClusterSpec, WorkerPoolSpec
from raydog_core.state import ClusterState

log = logging.getLogger("raydog")


def warm_spec(
    spec: ClusterSpec, pools: Sequence[WorkerPoolSpec], platform: str | None
) -> tuple[reuse.WarmKey, ClusterSpec]:
    """The warm key of a spec with a reuse_key, and the spec named and labelled after it (its pools take
    the new name too: `WorkerPools.rename`)."""
    key = reuse.WarmKey.of(spec, pools, platform)
    labels = {**spec.cluster_labels, reuse.REUSE_LABEL: key.label}
    return key, spec.model_copy(update={"cluster_name": key.cluster_name, "cluster_labels": labels})


def race_lost(key: reuse.WarmKey, error: ClusterNameTakenError) -> WarmClusterRaceError:
    """Another machine created the warm cluster as this one tried to: nothing was created here."""
    return WarmClusterRaceError(
        f"warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}) was created by another "
        f"machine as this run tried to: retry, and the run attaches to it ({error})"
    )


@dataclass(frozen=True)
class WarmAttach:
    """Attaches a builder to the live warm cluster of `key`, through `adopt`: it makes the builder a
    client of the cluster a state names and returns the builder's copy of that state, or raises (a
    RayDogError or LeaseError) with the builder unchanged."""

    key: reuse.WarmKey
    backend: Backend
    spec: ClusterSpec
    api_url: str | None
    adopt: Callable[[ClusterState], ClusterState]

    def attach_or_build(self, timeout: float, build: Callable[[], ClusterState]) -> bool:
        """Attach to the live warm cluster of the key, else `build` it (which returns its state), under
        the key's lock so that parallel runs with one key build one cluster; returns whether it attached."""
        key = self.key
        with reuse.creation_lock(key, timeout):
            if self._attach(timeout):
                return True
            try:
                state = build()
            except ClusterNameTakenError as error:  # another machine got there first: nothing is ours
                raise race_lost(key, error) from None
            warm_files.remember(state)
        return False

    def _attach(self, timeout: float) -> bool:
        """Whether the builder is now attached; False where there is no usable warm cluster."""
        state = reuse.warm_state(self.key, self.backend)
        if state is not None:
            adopted = self._attach_here(state)
        else:
            adopted = self._attach_elsewhere(timeout)
            if adopted is not None:
                warm_files.remember(adopted)  # the next run on this machine finds it here
        if adopted is None:
            return False
        log.info("attached to warm cluster %s (%s)", self.spec.cluster_name, adopted.cluster_id)
        return True

    def _attach_here(self, state: ClusterState) -> ClusterState | None:
        """Use the warm cluster `state` names if its head runs where the state says and its watchdog
        grants this client a lease; otherwise shut it down (it is dead or ending) and say None."""
        try:
            return self.adopt(state)
        except (RayDogError, leases.LeaseError) as error:
            reuse.replace_dead(self.key, state, self.backend, str(error))
            return None

    def _attach_elsewhere(self, timeout: float) -> ClusterState | None:
        """Use the warm cluster of this key that another machine built (no state of it is here): found
        on the platform, waited for while its head starts (within the build timeout), reached with the
        token this machine was given for it ($RAYDOG_RAY_AUTH_TOKEN, the builder's). A failure here is
        raised, never a reason to shut that cluster down: it is someone else's, and may be healthy."""
        key, backend = self.key, self.backend
        record = reuse.live_record(key, backend, self.spec.cluster_namespace)
        if record is None:
            return None
        state = poll_until(
            lambda: reuse.state_from_platform(record, backend, self.spec, self.api_url),
            time.monotonic() + timeout,
            lambda: BuildTimeoutError(
                f"warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}), built from another machine, "
                f"has no running head after {timeout:.0f} s (build_timeout)"
            ),
        )
        brought_token = state.auth_mode == "token" and auth.load_token(state.cluster_id) is None
        if brought_token:
            token = auth.shared_token()
            if token is None:
                raise RayDogError(
                    f"warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}) is running, built from "
                    f"another machine, and this machine has no token for it: set {auth.TOKEN_ENV_VAR} to the "
                    "token its builder used (kept in a secrets manager), as on the builder's machine"
                )
            auth.save_token(state.cluster_id, token)
        try:
            return self.adopt(state)
        except (RayDogError, leases.LeaseError) as error:
            if brought_token:
                auth.delete_token(state.cluster_id)
            raise RayDogError(
                f"could not attach to warm cluster {key.cluster_name} (reuse_key {key.reuse_key!r}), built "
                f"from another machine: {error}; if {auth.TOKEN_ENV_VAR} is not its builder's token, set it "
                "to that one (the cluster is left as it is)"
            ) from None
