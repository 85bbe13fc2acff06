"""Saved state never decides where a credential or token goes: a crafted state gets a clear error and
the address it names receives nothing. Recording HTTP servers on loopback stand for the attacker."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from raydog_core import RayDogCluster, RayDogClusterProxy, StateError, lifecycle
from raydog_core.ports import free_ports
from raydog_core.testing.faults import LISTEN_SCRIPT


class Recorder(http.server.ThreadingHTTPServer):
    """Answers everything with 200 and keeps every request's path and headers."""

    def __init__(self, host: str, port: int) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.requests.append((self.path, dict(self.headers)))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


@pytest.fixture
def recorder(request: pytest.FixtureRequest) -> Iterator[Recorder]:
    host, port = getattr(request, "param", ("127.0.0.1", 0))
    server = Recorder(host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_yellowdog_credentials_never_go_to_a_platform_the_state_names(
    recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    (closed_port,) = free_ports(1)
    monkeypatch.setenv("YD_API_KEY_ID", "canary-key-id")
    monkeypatch.setenv("YD_API_KEY_SECRET", "canary-key-secret")
    monkeypatch.setenv("YD_API_URL", f"http://127.0.0.1:{closed_port}")  # what the caller configured
    state = {
        "version": 1,
        "backend": "yellowdog",
        "cluster_id": "ydid:wrkreq:000000:crafted",
        "cluster_name": "crafted",
        "cluster_namespace": "raydog",
        "api_url": recorder.url,
        "phase": "running",
    }
    proxy = RayDogClusterProxy()
    proxy.load_saved_state_from_json(state)
    with pytest.raises(StateError, match="credentials only go to the platform you configured"):
        proxy.shut_down()
    with pytest.raises(StateError, match="credentials only go to the platform you configured"):
        RayDogCluster.from_state(state)
    assert recorder.requests == []


@pytest.fixture
def stand_in_cluster(local_backend, monkeypatch: pytest.MonkeyPatch) -> Iterator[RayDogCluster]:
    """A local cluster whose head only listens on its GCS port: no Ray, but a real node and a token."""
    monkeypatch.setattr(lifecycle, "HEAD_WITHOUT_DASHBOARD_S", 0.5)
    cluster = RayDogCluster(cluster_name="trusted", head_node_ray_start_script=LISTEN_SCRIPT)
    cluster.build(60, wait_for_workers=False)  # no Ray: nothing would ever join
    yield cluster
    cluster.shut_down()


@pytest.mark.parametrize("recorder", [("127.0.0.2", 0)], indirect=True)
def test_the_token_never_goes_to_a_head_address_only_the_state_names(
    stand_in_cluster: RayDogCluster, recorder: Recorder
) -> None:
    crafted = stand_in_cluster.state.model_copy(deep=True)
    crafted.head.private_ip = "127.0.0.2"
    crafted.head.dashboard_port = recorder.server_address[1]
    attached = RayDogCluster.from_state(crafted.to_json())
    with pytest.raises(StateError, match="refusing to use the state"):
        attached.head_node()
    # Counting nodes asks the head's dashboard with the token: at the backend's address, not 127.0.0.2.
    attached.wait_for_nodes(count=0, timeout=1)
    assert recorder.requests == []
    assert stand_in_cluster.head_node().private_ip == stand_in_cluster.state.head.private_ip


def test_the_token_never_goes_to_a_head_port_only_the_state_names(stand_in_cluster: RayDogCluster) -> None:
    """Same head address, another port (another service on the head's host): refused, and what talks to
    the head uses the ports its backend chose."""
    head_ip = stand_in_cluster.state.head.private_ip
    recorder = Recorder(head_ip, 0)
    thread = threading.Thread(target=recorder.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        crafted = stand_in_cluster.state.model_copy(deep=True)
        crafted.head.dashboard_port = recorder.server_address[1]
        attached = RayDogCluster.from_state(crafted.to_json())
        with pytest.raises(StateError, match="head ports"):
            attached.head_node()
        attached.wait_for_nodes(count=0, timeout=1)  # asks the dashboard with the token: the real port
        assert recorder.requests == []
    finally:
        recorder.shutdown()
        recorder.server_close()
        thread.join(5)
