"""The autoscaler's tag store: Ray's node tags in Redis on the head, shared by `ray up` and the monitor.

Ray's autoscaler runs the NodeProvider in two processes (the `ray` CLI on the client and the monitor
on the head), so tags must live outside both. Layout, namespaced per cluster:

| key | type | holds |
| --- | --- | --- |
| `raydog:<cluster>:node:<node id>` | hash | Ray's tags of one node |
| `raydog:<cluster>:nodes` | set | ids that have tags (to find and drop tags of nodes that died) |
| `raydog:<cluster>:meta` | hash | cluster facts the provider shares (ports, pool ids) |

Reading every node's tags is one pipelined round trip, whatever the node count; writing a node's tags
is one MULTI/EXEC transaction, so no reader sees half of them. Redis listens on the head's loopback
with a password; the client reaches it through an SSH tunnel whose local end is 127.0.0.1.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.typing import FieldT

from raydog_core.errors import RayDogError
from raydog_core.tunnels import RayTunnels, SSHTunnelSpec

log = logging.getLogger("raydog")

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 16667  # upstream RayDog's default: not Ray's 6379
SOCKET_TIMEOUT_S = 5.0

Tags = dict[str, str]


class TagStoreError(RayDogError):
    """The tag store could not be reached or refused us (the message never holds the password)."""


class TagStore:
    """Node tags of one cluster in Redis; see the module docstring."""

    def __init__(
        self,
        cluster_name: str,
        port: int,
        password: str,
        host: str = LOOPBACK,
        tunnels: RayTunnels | None = None,
    ) -> None:
        self.cluster_name = cluster_name
        self.host = host
        self.port = port
        self._tunnels = tunnels
        self._prefix = f"raydog:{cluster_name}:"
        self._client = redis.Redis(
            host=host,
            port=port,
            password=password,
            decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=30,
            # A few quick retries: the autoscaler calls again within seconds anyway.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
        )
        self.round_trips = 0  # counted for the benchmark and tests: one per pipeline or command

    def __repr__(self) -> str:
        return f"TagStore(cluster={self.cluster_name!r}, {self.host}:{self.port})"

    # -- connecting -----------------------------------------------------------------------------------

    @classmethod
    def on_head(cls, cluster_name: str, port: int, password_file: str | Path) -> TagStore:
        """Direct connection from a process on the head node (or, locally, on the same machine)."""
        return cls(cluster_name, port, read_password(password_file))

    @classmethod
    def through_tunnel(
        cls,
        cluster_name: str,
        port: int,
        password: str,
        tunnels_factory: type[RayTunnels] = RayTunnels,
        **ssh: object,
    ) -> TagStore:
        """Through an SSH tunnel to the head (local end on 127.0.0.1, a free port); `ssh` as RayTunnels."""
        tunnels = tunnels_factory(ray_tunnel_specs=[SSHTunnelSpec(0, port)], **ssh)  # type: ignore[arg-type]
        tunnels.start_tunnels()
        return cls(cluster_name, tunnels.local_port(port), password, tunnels=tunnels)

    def ping(self) -> None:
        """Raise TagStoreError unless the store answers with our password."""
        self._call(self._client.ping)

    def close(self) -> None:
        """Close the connection and any tunnel; never touches the stored tags."""
        try:
            self._client.close()
        finally:
            if self._tunnels is not None:
                self._tunnels.stop_tunnels()

    # -- node tags ------------------------------------------------------------------------------------

    def read_all(self, node_ids: Iterable[str]) -> tuple[dict[str, Tags], set[str]]:
        """Tags of these nodes and every id that has tags stored: ONE pipelined round trip."""
        ids = list(node_ids)
        pipe = self._client.pipeline(transaction=False)
        pipe.smembers(self._index)
        for node_id in ids:
            pipe.hgetall(self._node_key(node_id))
        results = self._call(pipe.execute)
        stored = set(results[0])
        return {node_id: tags for node_id, tags in zip(ids, results[1:], strict=True) if tags}, stored

    def set_tags(self, node_ids: Iterable[str], tags: Mapping[str, str]) -> None:
        """Merge `tags` into each node's tags, atomically (one MULTI/EXEC for all of them)."""
        # FieldT: redis takes a Mapping invariant in its key type, which a plain dict[str, str] does not fit.
        mapping: dict[FieldT, str] = {key: str(value) for key, value in tags.items() if value is not None}
        ids = list(node_ids)
        if not ids or not mapping:
            return
        pipe = self._client.pipeline(transaction=True)
        for node_id in ids:
            pipe.hset(self._node_key(node_id), mapping=mapping)
        pipe.sadd(self._index, *ids)
        self._call(pipe.execute)

    def remove(self, node_ids: Iterable[str]) -> None:
        """Forget the tags of nodes that are gone."""
        ids = list(node_ids)
        if not ids:
            return
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(*(self._node_key(node_id) for node_id in ids))
        pipe.srem(self._index, *ids)
        self._call(pipe.execute)

    # -- cluster facts --------------------------------------------------------------------------------

    def get_meta(self) -> Tags:
        return self._call(self._client.hgetall, self._meta)

    def set_meta(self, values: Mapping[str, str | int]) -> None:
        self._call(self._client.hset, self._meta, mapping={k: str(v) for k, v in values.items()})

    def set_meta_if_absent(self, field: str, value: str) -> str:
        """Store `value` unless the field exists; returns the stored value (first writer wins)."""
        pipe = self._client.pipeline(transaction=True)
        pipe.hsetnx(self._meta, field, value)
        pipe.hget(self._meta, field)
        return self._call(pipe.execute)[1]

    # -- the whole cluster ----------------------------------------------------------------------------

    def keys(self) -> list[str]:
        """Every key of this cluster (for leak checks)."""
        return sorted(self._call(lambda: list(self._client.scan_iter(match=self._prefix + "*", count=1000))))

    def clear(self) -> None:
        """Delete every key of this cluster (at `ray down`)."""
        keys = self.keys()
        if keys:
            self._call(self._client.delete, *keys)

    # -- internals ------------------------------------------------------------------------------------

    @property
    def _index(self) -> str:
        return self._prefix + "nodes"

    @property
    def _meta(self) -> str:
        return self._prefix + "meta"

    def _node_key(self, node_id: str) -> str:
        return f"{self._prefix}node:{node_id}"

    def _call(self, function, *args, **kwargs):
        self.round_trips += 1
        try:
            return function(*args, **kwargs)
        except redis.AuthenticationError:
            raise TagStoreError(
                f"tag store {self.host}:{self.port} of cluster {self.cluster_name} refused the password"
            ) from None
        except redis.RedisError as error:
            raise TagStoreError(
                f"tag store {self.host}:{self.port} of cluster {self.cluster_name} failed: "
                f"{type(error).__name__}: {error}"
            ) from None


def read_password(path: str | Path) -> str:
    try:
        password = Path(path).expanduser().read_text().strip()
    except OSError as error:
        raise TagStoreError(f"cannot read the tag store password file {path}: {error.strerror}") from None
    if not password:
        raise TagStoreError(f"the tag store password file {path} is empty")
    return password
