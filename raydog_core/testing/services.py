"""Real Redis and OpenSSH servers on loopback, for tests of the tag store, tunnels and the autoscaler.

Each server runs from the Debian binary as the current user, on a free 127.0.0.1 port, with its own
files in a temporary directory, and is stopped by the PID it was started with (never by name).
"""

from __future__ import annotations

import getpass
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from raydog_core import processes
from raydog_core.ports import free_ports, is_listening

LOOPBACK = "127.0.0.1"
START_TIMEOUT_S = 15.0
REDIS_SERVER = "redis-server"
SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # sshd started by root insists on it (Debian's service unit creates it)


@dataclass(frozen=True)
class RedisServer:
    host: str
    port: int
    password: str
    password_file: Path

    def __repr__(self) -> str:  # the password never shows in test output
        return f"RedisServer(host={self.host!r}, port={self.port})"


@dataclass(frozen=True)
class SSHServer:
    host: str
    port: int
    user: str
    client_key: Path  # private key accepted by the server
    client_key_passphrase: str | None
    known_hosts: Path  # an OpenSSH known_hosts file holding this server's host key
    host_key_fingerprint: str  # "SHA256:..." as `ssh-keygen -l` prints it


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path, what: str) -> None:
    if not processes.wait_until(
        lambda: proc.poll() is not None or is_listening(LOOPBACK, port), START_TIMEOUT_S
    ):
        _stop(proc)
        raise RuntimeError(
            f"{what} did not listen on {LOOPBACK}:{port}: {log.read_text(errors='replace')[-2000:]}"
        )
    if proc.poll() is not None:
        raise RuntimeError(
            f"{what} exited with code {proc.returncode}: {log.read_text(errors='replace')[-2000:]}"
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the server we started, by its session (it is the leader), and reap it."""
    ref = processes.ProcessRef(proc.pid, processes.process_create_time(proc.pid))
    processes.stop_sessions([ref])
    proc.wait(timeout=10)


def start_redis(directory: Path) -> tuple[RedisServer, subprocess.Popen[bytes]]:
    """redis-server with a password, on loopback only, without persistence; config read from stdin."""
    binary = shutil.which(REDIS_SERVER) or "/usr/bin/redis-server"
    (port,) = free_ports(1)
    password = secrets.token_urlsafe(24)
    password_file = directory / "redis.password"
    password_file.write_text(password)
    password_file.chmod(0o600)
    config = (
        f"port {port}\nbind {LOOPBACK}\nprotected-mode yes\nrequirepass {password}\n"
        f'save ""\nappendonly no\ndir {directory}\n'
    )
    log = directory / "redis.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [binary, "-"], stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    assert proc.stdin is not None
    proc.stdin.write(config.encode())
    proc.stdin.close()
    _wait_listening(proc, port, log, "redis-server")
    return RedisServer(LOOPBACK, port, password, password_file), proc


def _keygen(path: Path, passphrase: str = "") -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase, "-C", "raydog-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )


def _fingerprint(public_key: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(public_key)], check=True, capture_output=True, text=True
    )
    return out.stdout.split()[1]


def start_sshd(
    directory: Path, client_key_passphrase: str | None = None
) -> tuple[SSHServer, subprocess.Popen[bytes]]:
    """OpenSSH sshd as the current user on a free loopback port, key authentication only."""
    directory.chmod(0o700)
    if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
        PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
    host_key = directory / "host_ed25519"
    client_key = directory / "client_ed25519"
    _keygen(host_key)
    _keygen(client_key, client_key_passphrase or "")
    authorized = directory / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    (port,) = free_ports(1)
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"ListenAddress {LOOPBACK}",
                f"Port {port}",
                f"HostKey {host_key}",
                f"PidFile {directory / 'sshd.pid'}",
                f"AuthorizedKeysFile {authorized}",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                "AllowTcpForwarding yes",
                "PermitTTY yes",
                "X11Forwarding no",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    log = directory / "sshd.log"
    with open(log, "ab") as out:
        # -D: stay in the foreground (so the PID is the server's); -e: log to stderr.
        proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _wait_listening(proc, port, log, "sshd")
    host_public = host_key.with_suffix(".pub").read_text().split()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[{LOOPBACK}]:{port} {host_public[0]} {host_public[1]}\n")
    server = SSHServer(
        host=LOOPBACK,
        port=port,
        user=getpass.getuser(),
        client_key=client_key,
        client_key_passphrase=client_key_passphrase,
        known_hosts=known_hosts,
        host_key_fingerprint=_fingerprint(host_key.with_suffix(".pub")),
    )
    return server, proc


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server with requirepass on a free loopback port, stopped at the end of the session."""
    directory = Path(tempfile.mkdtemp(prefix="rd-redis-"))
    server, proc = start_redis(directory)
    try:
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_server() -> Iterator[SSHServer]:
    """A real OpenSSH sshd (current user, key auth, loopback high port), stopped at the end of the session."""
    directory = Path(tempfile.mkdtemp(prefix="rd-sshd-"))
    server, proc = start_sshd(directory)
    try:
        yield server
    finally:
        _stop(proc)
        shutil.rmtree(directory, ignore_errors=True)
