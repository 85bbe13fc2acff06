"""The tag store against a real redis-server with requirepass (and through a real sshd tunnel)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from raydog_core.tagstore import TagStore, TagStoreError


@pytest.fixture
def store(redis_server) -> Iterator[TagStore]:
    tag_store = TagStore.on_head(f"c{secrets.token_hex(3)}", redis_server.port, redis_server.password_file)
    yield tag_store
    tag_store.clear()
    assert tag_store.keys() == [], "keys of the cluster left behind"
    tag_store.close()


def test_refuses_connections_without_or_with_a_wrong_password(redis_server) -> None:
    anonymous = redis.Redis(host=redis_server.host, port=redis_server.port, retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()
    wrong = TagStore("c", redis_server.port, "not-the-password")
    with pytest.raises(TagStoreError, match="refused the password") as error:
        wrong.ping()
    assert redis_server.password not in str(error.value)
    wrong.close()


def test_reads_every_node_in_one_round_trip(store: TagStore) -> None:
    ids = [f"n{i}" for i in range(200)]
    store.set_tags(ids, {"ray-node-kind": "worker", "ray-user-node-type": "cpu"})
    store.set_tags(["n7"], {"ray-node-status": "up-to-date"})
    before = store.round_trips
    tags, stored = store.read_all([*ids, "unknown"])
    assert store.round_trips == before + 1
    assert stored == set(ids)
    assert tags["n7"] == {
        "ray-node-kind": "worker",
        "ray-user-node-type": "cpu",
        "ray-node-status": "up-to-date",
    }
    assert "unknown" not in tags


def test_removed_nodes_leave_no_keys_and_clusters_do_not_mix(store: TagStore, redis_server) -> None:
    other = TagStore.on_head(store.cluster_name + "x", redis_server.port, redis_server.password_file)
    try:
        store.set_tags(["a", "b"], {"k": "v"})
        other.set_tags(["a"], {"k": "other"})
        store.set_meta({"gcs_port": 1234})
        store.remove(["a"])
        tags, stored = store.read_all(["a", "b"])
        assert set(tags) == {"b"} and stored == {"b"}
        assert other.read_all(["a"])[0] == {"a": {"k": "other"}}
        assert store.get_meta() == {"gcs_port": "1234"}
        assert store.set_meta_if_absent("pool:cpu", "p1") == "p1"
        assert store.set_meta_if_absent("pool:cpu", "p2") == "p1"
    finally:
        other.clear()
        assert other.keys() == []
        other.close()


def test_writes_are_atomic_per_node_under_concurrency(store: TagStore) -> None:
    def writer(value: str) -> None:
        for _ in range(50):
            store_copy = TagStore(
                store.cluster_name, store.port, store._client.connection_pool.connection_kwargs["password"]
            )
            store_copy.set_tags(["n"], {"x": value, "y": value})
            store_copy.close()

    threads = [threading.Thread(target=writer, args=(str(i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for _ in range(100):
        tags = store.read_all(["n"])[0].get("n")
        if tags:
            assert tags["x"] == tags["y"]
    for thread in threads:
        thread.join()


def test_none_values_are_skipped_not_an_error(store: TagStore) -> None:
    store.set_tags(["n"], {"publicip": None, "privateip": "10.0.0.1"})  # type: ignore[dict-item]
    assert store.read_all(["n"])[0]["n"] == {"privateip": "10.0.0.1"}


def test_through_an_ssh_tunnel(redis_server, ssh_server) -> None:
    tag_store = TagStore.through_tunnel(
        "tunnelled",
        redis_server.port,
        redis_server.password,
        ray_head_ip_address=ssh_server.host,
        ssh_user=ssh_server.user,
        private_key_file=ssh_server.client_key,
        ssh_port=ssh_server.port,
        known_hosts_file=ssh_server.known_hosts,
    )
    try:
        assert tag_store.port != redis_server.port  # the tunnel's local end
        tag_store.set_tags(["n"], {"k": "v"})
        assert tag_store.read_all(["n"])[0] == {"n": {"k": "v"}}
    finally:
        tag_store.clear()
        assert tag_store.keys() == []
        tag_store.close()
    assert not tag_store._tunnels.is_active


def test_unreachable_store_gives_a_clear_error() -> None:
    from raydog_core.ports import free_ports

    (port,) = free_ports(1)
    tag_store = TagStore("c", port, "pw")
    with pytest.raises(TagStoreError, match=f"127.0.0.1:{port}"):
        tag_store.read_all(["n"])
