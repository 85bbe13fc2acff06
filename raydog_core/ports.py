"""Free TCP ports for nodes that share a host, so clusters never assume 6379/8265/10001 are theirs.

A port chosen here is bound by a Ray process seconds later, on whatever address the node uses. Two
things can take it in between, and both were seen in CI as a head whose dashboard agent could not bind
("address already in use"), so the job agent never came and every job submission failed:

- **Outgoing connections.** The kernel gives every outgoing TCP connection a local port from its
  ephemeral range (Linux: 32768-60999), on the address it connects from. Nodes on one host connect to
  each other all the time; a port taken from that range (as `bind(port 0)` does) can become one of those
  connections' local port before the node binds it. So ports come from below the ephemeral range.
- **A bind on another address.** A port free on 127.0.0.1 may be bound on the node's own address. So a
  port is free only if it binds on every address (the wildcard).
"""

from __future__ import annotations

import random
import socket
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path

_MAX_TRIES = 512
LOWEST_PORT = 20000  # above the usual services' registered ports
# Ports Ray binds whatever it is told: the autoscaler monitor's and the dashboard's metrics servers
# (44217, 44227), and the defaults of a head started without arguments. Handed to a node as, say, its
# node manager port, the first would be taken by its own head's monitor a few seconds later and the
# raylet would crash ("Address already in use").
RAY_FIXED_PORTS = frozenset({6379, 8265, 10001, 44217, 44227, 52365})
_recently_given: deque[int] = deque(maxlen=4096)
_lock = threading.Lock()
_random = random.SystemRandom()


def free_ports(count: int) -> list[int]:
    """`count` distinct ports that were free on every address a moment ago, below the kernel's
    ephemeral range, none handed out recently by this process, none of Ray's fixed ones.

    A port given out earlier (a head's GCS port, say, not yet bound by the node that will use it) is not
    given again in this process.
    """
    with _lock:
        ports: list[int] = []
        for port in _candidates():
            if len(ports) == count:
                break
            taken = port in _recently_given or port in RAY_FIXED_PORTS or port in ports
            if not taken and _is_free(port):
                ports.append(port)
        if len(ports) < count:
            raise OSError(f"could not find {count} free ports below the ephemeral range")
        _recently_given.extend(ports)
        return ports


def ephemeral_range() -> tuple[int, int]:
    """The kernel's range for outgoing connections' local ports (Linux's default where unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _candidates() -> Iterator[int]:
    """Random ports below the ephemeral range (above it where too few are left below)."""
    low, high = ephemeral_range()
    below, above = range(LOWEST_PORT, low), range(high + 1, 65536)
    pool = below if len(below) >= 1000 else above if len(above) >= 1000 else range(1024, 65536)
    for _ in range(_MAX_TRIES):
        yield _random.choice(pool)


def _is_free(port: int) -> bool:
    """Whether the port binds on the wildcard address, which fails if any address has it bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


def is_listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
