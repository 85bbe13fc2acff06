"""RayDogClusterProxy: operate and shut down a cluster from saved state, in another process."""

from __future__ import annotations

import logging
from pathlib import Path

from raydog_core import auth
from raydog_core.backends import Backend, NodeInfo, create_backend
from raydog_core.credentials import YellowDogCredentials
from raydog_core.errors import ShutdownError, StateError
from raydog_core.lifecycle import ClusterSession
from raydog_core.pricing import ClusterUsage
from raydog_core.state import ClusterState

log = logging.getLogger("raydog")


class RayDogClusterProxy:
    """Rebuilt from `save_state_to_json()`; YellowDog credentials as arguments or YD_API_* variables."""

    def __init__(
        self,
        yd_application_key_id: str | None = None,
        yd_application_key_secret: str | None = None,
        yd_platform_api_url: str | None = None,
        *,
        backend: Backend | None = None,
    ) -> None:
        self._credential_args = (yd_application_key_id, yd_application_key_secret, yd_platform_api_url)
        self._backend = backend
        self.state: ClusterState | None = None
        self._shut_down = False

    def __repr__(self) -> str:
        name = self.state.cluster_name if self.state else None
        return f"RayDogClusterProxy(cluster_name={name!r})"

    def load_saved_state_from_json(self, state: str | bytes | dict) -> ClusterState:
        self.state = ClusterState.from_json(state)
        self._shut_down = False
        return self.state

    def load_saved_state_from_json_file(self, file_name: str | Path) -> ClusterState:
        self.state = ClusterState.from_file(file_name)
        self._shut_down = False
        return self.state

    @property
    def ray_address(self) -> str | None:
        return self._require_state().ray_address

    def nodes(self) -> list[NodeInfo]:
        state = self._require_state()
        return self.backend.list_nodes(state.cluster_id)

    def client_environment(self) -> dict[str, str]:
        state = self._require_state()
        return auth.client_environment(state.cluster_id, state.auth_mode)

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            state = self._require_state()
            credentials = None
            if state.backend == "yellowdog":
                key_id, secret, url = self._credential_args
                credentials = YellowDogCredentials.resolve(key_id, secret, url)
                state.check_platform(credentials.api_url)  # credentials go only where configured
            self._backend = create_backend(state.backend, credentials)
        return self._backend

    def shut_down(self) -> ClusterUsage | None:
        """Stop everything the saved state names (idempotent; stale ids are not an error); returns what
        the cluster used (also in `state.usage`), None if it could not be measured or was already down."""
        state = self._require_state()
        if self._shut_down:
            return None
        session = ClusterSession.from_state(state, self.backend)
        failures = session.shut_down(state.worker_pool_ids, "shut down from its saved state")
        self._shut_down = True
        state.phase = "shut_down"
        usage = session.usage(state)
        log.info("cluster %s shut down from saved state", state.cluster_name)
        if failures:
            raise ShutdownError(failures)
        return usage

    def _require_state(self) -> ClusterState:
        if self.state is None:
            raise StateError("no saved state loaded: call load_saved_state_from_json(...) first")
        return self.state
