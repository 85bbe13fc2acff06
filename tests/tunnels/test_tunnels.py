"""RayTunnels against a real OpenSSH sshd on loopback: forwarding, host-key checks, clear errors."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import psutil
import pytest

from raydog_core.backends.base import NodeInfo, NodeRole, NodeStatus
from raydog_core.errors import SpecError, StateError
from raydog_core.ports import free_ports
from raydog_core.ssh_access import SshAccess
from raydog_core.testing.services import SSHServer
from raydog_core.tunnels import RayTunnels, SSHTunnelSpec, TunnelError, tunnel_to_head


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


def _head(public_ip: str | None) -> NodeInfo:
    """The head as a backend reports it (tunnels go only to addresses a backend vouches for)."""
    return NodeInfo("c-head-1", "c-head", NodeRole.HEAD, NodeStatus.RUNNING, public_ip=public_ip)


def test_tunnel_to_head_with_the_key_as_text(ssh_server, redis_server) -> None:
    """The Airflow connection's form: key text, port and known_hosts under `ssh_*` names."""
    import redis

    key_text = ssh_server.client_key.read_text()
    access = SshAccess.from_fields(
        {
            "ssh_user": ssh_server.user,
            "ssh_private_key": key_text,
            "ssh_port": str(ssh_server.port),
            "ssh_known_hosts_file": str(ssh_server.known_hosts),
            "ssh_host_key_fingerprint": "",  # empty form fields count as not given
        }
    )
    assert access.host_key_policy == "known_hosts"
    assert key_text.splitlines()[1] not in repr(access) + str(access)
    with tunnel_to_head(_head("127.0.0.1"), access, [redis_server.port]) as tunnels:
        local = tunnels.local_port(redis_server.port)
        client = redis.Redis(host="127.0.0.1", port=local, password=redis_server.password)
        assert client.ping()
        client.close()
    assert not tunnels.is_active


def test_tunnel_to_head_needs_a_built_head(ssh_server) -> None:
    access = SshAccess(user="me", private_key_file=str(ssh_server.client_key))
    with pytest.raises(StateError, match="no address yet"):
        tunnel_to_head(_head(None), access, [8265])


def test_failed_login_releases_its_local_port(ssh_server, tmp_path) -> None:
    """sshtunnel binds the local port before the login fails: it must be free again, promptly."""
    import subprocess

    key = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (local,) = free_ports(1)
    tunnels = RayTunnels(
        ssh_server.host,
        ssh_server.user,
        private_key_file=key,
        ray_tunnel_specs=[SSHTunnelSpec(local, 22)],
        ssh_port=ssh_server.port,
        known_hosts_file=ssh_server.known_hosts,
    )
    with pytest.raises(TunnelError, match="could not open"):
        tunnels.start_tunnels()
    with socket.create_server(("127.0.0.1", local)):
        pass  # the port can be bound again: nothing of the failed attempt listens on it


@pytest.mark.parametrize(
    ("fields", "where", "field"),
    [
        ({"ssh_user": "me"}, "", "ssh_private_key_file"),
        ({"ssh_user": "me", "ssh_private_key": "k", "ssh_private_key_file": "f"}, "", "ssh_private_key"),
        ({"ssh_user": "me", "ssh_password": "pw", "ssh_port": "twenty-two"}, "conn", "conn.ssh_port"),
        ({"ssh_user": "me", "ssh_password": "pw", "ssh_host_key_fingerprint": "MD5:x"}, "", "ssh_host_key"),
        ({"ssh_private_key": "k"}, "block", "block.ssh_user"),
    ],
)
def test_ssh_access_errors_name_the_callers_field(fields: dict, where: str, field: str) -> None:
    with pytest.raises(SpecError, match=field):
        SshAccess.from_fields(fields, where=where)


def test_ssh_access_keeps_secrets_out_of_reprs_and_checks_files(tmp_path) -> None:
    access = SshAccess(user="me", password="pw-s3cret", known_hosts_file=str(tmp_path / "none"))
    assert "pw-s3cret" not in repr(access) and access.load_private_key() is None
    with pytest.raises(SpecError, match="ssh_known_hosts_file"):
        access.check_files(prefix="ssh_")
    garbage = tmp_path / "key"
    garbage.write_text("not a key")
    with pytest.raises(SpecError, match="private_key_file: is not"):
        SshAccess(user="me", private_key_file=str(garbage)).load_private_key()
    with pytest.raises(SpecError, match="access"):
        RayTunnels("127.0.0.1", "me", access=access)


def test_host_keys_are_verified_by_default_against_the_users_known_hosts(
    ssh_server, echo_server, tmp_path, monkeypatch, caplog
) -> None:
    """With neither known_hosts_file nor a fingerprint, ~/.ssh/known_hosts decides, as OpenSSH does;
    skipping the check is an explicit, warned opt-in."""
    monkeypatch.setenv("HOME", str(tmp_path))  # a user who never met this head
    host, port = echo_server
    access = SshAccess(
        user=ssh_server.user, private_key_file=str(ssh_server.client_key), port=ssh_server.port
    )
    assert access.host_key_policy == "known_hosts"
    tunnels = RayTunnels(
        ssh_server.host, ray_tunnel_specs=[RayTunnels.through_head(host, port)], access=access
    )
    with pytest.raises(TunnelError, match="is not in"):
        tunnels.start_tunnels()
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "known_hosts").write_text(ssh_server.known_hosts.read_text())
    with RayTunnels(
        ssh_server.host, ray_tunnel_specs=[RayTunnels.through_head(host, port)], access=access
    ) as t:
        assert _exchange(t.local_port(port, host), b"ok") == b"echo:ok"
    unchecked = access.model_copy(update={"skip_host_key_check": True})
    (tmp_path / ".ssh" / "known_hosts").unlink()
    with RayTunnels(
        ssh_server.host, ray_tunnel_specs=[RayTunnels.through_head(host, port)], access=unchecked
    ) as t:
        assert _exchange(t.local_port(port, host), b"ok") == b"echo:ok"
    assert "NOT verified" in caplog.text
