"""Stopping only what we started: sessions, PID ownership and the grace-then-kill teardown."""

from __future__ import annotations

import sys
import time

from raydog_core import processes


def _start(tmp_path, script: str):
    path = tmp_path / "node.sh"
    path.write_text(script)
    return processes.start_session(
        ["bash", str(path)], {"PATH": "/usr/bin:/bin"}, str(tmp_path), str(tmp_path / "log")
    )


def test_stop_kills_the_whole_session_including_term_ignoring_children(tmp_path) -> None:
    proc, ref = _start(tmp_path, "trap '' TERM\nsleep 300 &\nsleep 300 &\nwait\n")
    assert processes.wait_until(lambda: len(processes.session_members([ref])) == 3, 5)
    started = time.monotonic()
    assert processes.stop_sessions([ref], grace_s=0.3) == []
    assert time.monotonic() - started < 3
    proc.wait(5)
    assert processes.session_members([ref]) == []
    assert not processes.is_ours(ref)


def test_a_reused_pid_is_not_ours(tmp_path) -> None:
    proc, ref = _start(tmp_path, "sleep 300\n")
    impostor = processes.ProcessRef(pid=ref.pid, create_time=ref.create_time - 1000)
    assert processes.is_ours(ref)
    assert not processes.is_ours(impostor)
    assert processes.session_members([impostor]) == []  # its members started "after" a leader that never was
    processes.stop_sessions([impostor])  # must not touch the real process
    assert processes.is_ours(ref)
    processes.stop_sessions([ref])
    proc.wait(5)


def test_our_own_process_is_never_a_member() -> None:
    me = processes.ProcessRef(pid=1, create_time=0.0)
    members = processes.session_members([me])
    assert all(p.pid != sys.modules["os"].getpid() for p in members)
