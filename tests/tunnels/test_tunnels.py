"""RayTunnels against a real OpenSSH sshd on loopback: forwarding, host-key checks, clear errors."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import psutil
import pytest

from raydog_core.errors import SpecError
from raydog_core.ports import free_ports
from raydog_core.testing.services import SSHServer
from raydog_core.tunnels import RayTunnels, SSHTunnelSpec, TunnelError


@pytest.fixture
def echo_server() -> Iterator[tuple[str, int]]:
    """A TCP echo server on 127.0.0.2, standing in for a private IP only the head can reach."""
    server = socket.create_server(("127.0.0.2", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            with conn:
                conn.sendall(b"echo:" + conn.recv(1024))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield "127.0.0.2", server.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    server.close()


def _exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        return conn.recv(1024)


def _tunnels(ssh: SSHServer, specs: list[SSHTunnelSpec], **kwargs: object) -> RayTunnels:
    options: dict[str, object] = {"ssh_port": ssh.port, "known_hosts_file": ssh.known_hosts}
    options.update(kwargs)
    return RayTunnels(ssh.host, ssh.user, private_key_file=ssh.client_key, ray_tunnel_specs=specs, **options)


def test_forwards_to_a_private_ip_through_the_head_bound_to_loopback(ssh_server, echo_server) -> None:
    host, port = echo_server
    with _tunnels(ssh_server, [RayTunnels.through_head(host, port)]) as tunnels:
        local = tunnels.local_port(port, host)
        assert _exchange(local, b"hi") == b"echo:hi"
        listeners = [
            c.laddr
            for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == local
        ]
        assert listeners and all(addr.ip == "127.0.0.1" for addr in listeners)
    assert not tunnels.is_active
    with pytest.raises(OSError):
        _exchange(local, b"closed")


def test_redis_through_a_tunnel_with_pinned_fingerprint(ssh_server, redis_server) -> None:
    import redis

    (local,) = free_ports(1)
    spec = SSHTunnelSpec(local, redis_server.port)
    tunnels = _tunnels(
        ssh_server, [spec], known_hosts_file=None, host_key_fingerprint=ssh_server.host_key_fingerprint
    )
    with tunnels:
        client = redis.Redis(host="127.0.0.1", port=local, password=redis_server.password)
        assert client.ping()
        client.close()


def test_default_specs_are_ray_client_and_dashboard(ssh_server) -> None:
    tunnels = RayTunnels("127.0.0.1", "someone", private_key_file=ssh_server.client_key)
    assert [(s.local_bind_port, s.remote_bind_port) for s in tunnels.specs] == [(10001, 10001), (8265, 8265)]
    assert all(s.remote_bind_host == "127.0.0.1" for s in tunnels.specs)


def test_wrong_fingerprint_is_refused_before_authentication(ssh_server) -> None:
    tunnels = _tunnels(
        ssh_server, [SSHTunnelSpec(0, 22)], known_hosts_file=None, host_key_fingerprint="SHA256:not-this-one"
    )
    with pytest.raises(TunnelError, match="fingerprint"):
        tunnels.start_tunnels()


def test_unknown_host_in_known_hosts_is_refused(ssh_server, tmp_path) -> None:
    other = tmp_path / "known_hosts"
    other.write_text("")
    with pytest.raises(TunnelError, match="is not in"):
        _tunnels(ssh_server, [SSHTunnelSpec(0, 22)], known_hosts_file=other).start_tunnels()


def test_wrong_key_gives_a_clear_error(ssh_server, tmp_path) -> None:
    import subprocess

    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    tunnels = RayTunnels(
        ssh_server.host,
        ssh_server.user,
        private_key_file=key,
        ray_tunnel_specs=[SSHTunnelSpec(0, 22)],
        ssh_port=ssh_server.port,
        known_hosts_file=ssh_server.known_hosts,
    )
    with pytest.raises(TunnelError, match=f"{ssh_server.user}@127.0.0.1:{ssh_server.port}"):
        tunnels.start_tunnels()


def test_nothing_listening_gives_a_clear_error(ssh_server) -> None:
    (port,) = free_ports(1)
    tunnels = RayTunnels(
        "127.0.0.1", ssh_server.user, private_key_file=ssh_server.client_key, ssh_port=port,
        ray_tunnel_specs=[SSHTunnelSpec(0, 22)],
    )  # fmt: skip
    with pytest.raises(TunnelError, match=str(port)):
        tunnels.start_tunnels()


def test_bad_input_names_the_field(ssh_server) -> None:
    with pytest.raises(SpecError, match="private_key_file"):
        RayTunnels("127.0.0.1", "me")
    with pytest.raises(SpecError, match="private_key_file"):
        RayTunnels("127.0.0.1", "me", private_key_file="/nonexistent/key")
    with pytest.raises(SpecError, match="remote_bind_port"):
        SSHTunnelSpec(0, 0)
    with pytest.raises(TunnelError, match="not open"):
        RayTunnels("127.0.0.1", "me", password="x").local_ports()
