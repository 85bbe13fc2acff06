"""Free TCP ports on loopback, so clusters never assume 6379/8265/10001 are theirs."""

from __future__ import annotations

import socket
import threading
from collections import deque
from contextlib import ExitStack

_MAX_SKIPS = 64
# Ports Ray binds whatever it is told: the autoscaler monitor's and the dashboard's metrics servers
# (44217, 44227), and the defaults of a head started without arguments. Handed to a node as, say, its
# node manager port, the first would be taken by its own head's monitor a few seconds later and the
# raylet would crash ("Address already in use"): both lie in the kernel's ephemeral range.
RAY_FIXED_PORTS = frozenset({6379, 8265, 10001, 44217, 44227, 52365})
_recently_given: deque[int] = deque(maxlen=4096)
_lock = threading.Lock()


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports that were free a moment ago, none handed out recently by this process.

    Ports are held together while chosen, so never the same one twice in a call; and a port given out
    earlier (a head's GCS port, say, not yet bound by the node that will use it) is not given again,
    which the kernel would otherwise happily do once the probing socket is closed. Ray's fixed ports
    are never given.
    """
    with _lock, ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count + _MAX_SKIPS):
            if len(ports) == count:
                break
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            if port not in _recently_given and port not in RAY_FIXED_PORTS:
                ports.append(port)
        if len(ports) < count:
            raise OSError(f"could not find {count} free ports on {host}")
        _recently_given.extend(ports)
        return ports


def is_listening(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False
