"""The leak count includes files stopped clusters leave: local temp dirs, tokens, passwords; only those
of its own RAYDOG_HOME, and any manifest state other than "running" counts as stopped."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raydog_core import auth
from raydog_core.backends.base import ClusterOptions, NodeLaunch, NodeRole
from raydog_core.backends.local.backend import MANIFEST, LocalBackend
from raydog_core.lifecycle import shut_down_cluster
from raydog_core.observability.password import PASSWORDS, cluster_password
from raydog_core.private_files import write_private
from raydog_core.testing.leaks import count_leaks

SLEEPER = NodeLaunch(role=NodeRole.HEAD, pool_name="left-head", script="exec sleep 600\n", env={})


def open_cluster(home: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[LocalBackend, str]:
    """A real local cluster of one sleeping node, with a token, an observability and a tag-store password."""
    monkeypatch.setenv("RAYDOG_HOME", str(home))
    backend = LocalBackend()
    cluster_id = backend.open_cluster(ClusterOptions(name="left", namespace="raydog")).cluster_id
    backend.create_pool(cluster_id, SLEEPER, 1)
    auth.save_token(cluster_id, auth.new_token())
    cluster_password(cluster_id)
    write_private(home / "autoscaler" / cluster_id / "tag-store.password", "x")
    return backend, cluster_id


def end_by_itself(backend: LocalBackend, cluster_id: str) -> Path:
    """What a cluster that ended on its own looks like before anyone cleans up: nodes gone, temp dir
    and secrets still there, a manifest state this version may not know."""
    backend.terminate_nodes(cluster_id, [n.node_id for n in backend.list_nodes(cluster_id)])
    return set_state(backend, cluster_id, "ended")


def set_state(backend: LocalBackend, cluster_id: str, state: str) -> Path:
    """Write the manifest's state; returns the cluster's temp dir."""
    manifest = backend.root / cluster_id / MANIFEST
    data = json.loads(manifest.read_text())
    data["state"] = state
    manifest.write_text(json.dumps(data))
    return Path(data["temp_dir"])


def test_files_of_a_stopped_local_cluster_are_counted(tmp_path, monkeypatch, yellowdog_emulator) -> None:
    home = tmp_path / "home"
    backend, cluster_id = open_cluster(home, monkeypatch)
    assert count_leaks(home, wait_s=0).files == []  # running: its files are in use
    other_backend, other_id = open_cluster(tmp_path / "other-home", monkeypatch)
    other_temp = end_by_itself(other_backend, other_id)
    monkeypatch.setenv("RAYDOG_HOME", str(home))
    temp_dir = end_by_itself(backend, cluster_id)
    leaks = count_leaks(home, wait_s=0)
    assert len(leaks.files) == 4, leaks.describe()  # temp dir, token, both passwords
    assert str(temp_dir) in leaks.describe() and str(other_temp) not in leaks.describe()
    # A YellowDog id is judged only against an emulator: no live work requirement, a leak.
    auth.save_token("ydid:workreq:000000:gone", "t")
    assert len(count_leaks(home, wait_s=0).files) == 4
    assert len(count_leaks(home, emulator=yellowdog_emulator, wait_s=0).files) == 5
    auth.delete_token("ydid:workreq:000000:gone")
    for backend_, id_, home_ in (
        (backend, cluster_id, home),
        (other_backend, other_id, tmp_path / "other-home"),
    ):
        monkeypatch.setenv("RAYDOG_HOME", str(home_))
        set_state(backend_, id_, "stopped")  # a state this version's shut-down reads
        shut_down_cluster(backend_, id_)  # its secrets go with it, a `ray up` cluster's files too
        assert not (home_ / "autoscaler" / id_).exists()
        assert PASSWORDS.load(id_) is None
        assert count_leaks(home_, emulator=yellowdog_emulator).total == 0
