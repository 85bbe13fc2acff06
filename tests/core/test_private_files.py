"""Everything RayDog writes under $RAYDOG_HOME is private: files 0600, directories 0700, whatever the
umask of the user's process, without ever changing that umask."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

from raydog_core import RayDogCluster, commands, processes
from raydog_core.private_files import (
    append_private,
    loose_entries,
    make_tree_private,
    private_dir,
    replace_private,
    write_private,
    write_private_new,
)
from raydog_core.testing.leaks import count_leaks


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_helpers_make_private_files_and_directories(tmp_path: Path) -> None:
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "a" / "b" / "file"
    write_private(target, "x")
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", target)] == [0o700, 0o700, 0o600]
    loose = tmp_path / "loose"
    loose.write_text("old")
    loose.chmod(0o644)
    replace_private(loose, "new")
    assert mode(loose) == 0o600 and loose.read_text() == "new"
    assert not write_private_new(loose, "other") and loose.read_text() == "new"
    with append_private(tmp_path / "log") as log:
        log.write(b"line\n")
    assert mode(tmp_path / "log") == 0o600
    assert mode(private_dir(tmp_path / "c" / "d")) == 0o700
    assert os.umask(umask) == umask  # nothing above touched the process umask


def test_make_tree_private_tightens_what_others_wrote(tmp_path: Path) -> None:
    (tmp_path / "logs" / "ray").mkdir(parents=True, mode=0o755)
    (tmp_path / "logs" / "ray" / "raylet.out").write_text("x")
    (tmp_path / "logs" / "ray" / "raylet.out").chmod(0o644)
    (tmp_path / "logs" / "link").symlink_to("/etc/hostname")
    assert len(loose_entries(tmp_path / "logs")) == 3
    make_tree_private(tmp_path / "logs")
    assert loose_entries(tmp_path / "logs") == []
    assert mode(Path("/etc/hostname")) & 0o044  # a link's target is never touched


@pytest.mark.slow
def test_local_cluster_leaves_only_private_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real Ray: manifest, lock, node scripts, node logs, Ray's moved session logs, node homes, token
    and command records, during the cluster's life and after it."""
    home = tmp_path / "home"
    monkeypatch.setenv("RAYDOG_HOME", str(home))
    with RayDogCluster(cluster_name="private") as cluster:
        cluster.add_worker_pool(worker_pool_node_count=1)
        cluster.build()
        proc, ref = processes.start_session(
            [sys.executable, "-c", "open('out.txt', 'w').write('x'); import time; time.sleep(600)"],
            dict(os.environ),
            str(tmp_path),
            str(home / "commands" / "a-command.log"),
        )
        commands.record(cluster.cluster_id, ref)
        assert processes.wait_until(lambda: (tmp_path / "out.txt").exists(), 60, 0.2)
        assert loose_entries(home) == []
    proc.wait()
    assert mode(tmp_path / "out.txt") == 0o600  # processes RayDog starts run with a private umask
    assert count_leaks(home).total == 0
    assert list(home.glob("local/*/logs/*.ray"))  # Ray's session logs were kept, and checked below
    assert loose_entries(home) == []
