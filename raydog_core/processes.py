"""Process groups RayDog starts and stops: a node is a session leader and everything it spawns.

Nothing here kills by name. A process is ours when its PID still has the start time we recorded
(PIDs are reused); its descendants are found by session id, which `ray start` and its children keep,
so Ray processes renamed by setproctitle are found too. Stopping signals the whole session, waits a
short grace and then kills, so a cluster is gone in seconds rather than after Ray's slow drains.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from raydog_core.private_files import PRIVATE_UMASK, append_private

DEFAULT_GRACE_S = 1.0
KILL_WAIT_S = 5.0


@dataclass(frozen=True)
class ProcessRef:
    """A started process group, identified so that a reused PID is never mistaken for it."""

    pid: int
    create_time: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> ProcessRef:
        return cls(pid=int(data["pid"]), create_time=float(data["create_time"]))


def start_session(
    argv: Sequence[str], env: Mapping[str, str], cwd: str, log_path: str
) -> tuple[subprocess.Popen[bytes], ProcessRef]:
    """Start `argv` as the leader of a new session, output appended to `log_path` (0600); whatever the
    session writes is private to the user too (its umask, set in the child only)."""
    with append_private(Path(log_path)) as log:
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    return proc, ProcessRef(proc.pid, process_create_time(proc.pid))


def process_create_time(pid: int) -> float:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def is_ours(ref: ProcessRef) -> bool:
    """True while the leader PID still belongs to the process we started (and is not a zombie)."""
    try:
        proc = psutil.Process(ref.pid)
        return abs(proc.create_time() - ref.create_time) < 0.05 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def session_members(refs: Iterable[ProcessRef]) -> list[psutil.Process]:
    """Every live process in the sessions these leaders started, leaders included.

    The leader may be gone while Ray processes it started live on (that is a leak to find). A member
    must have started no earlier than its leader, and a leader PID now held by another process rules
    its session out, so an unrelated session reusing the id is never touched.
    """
    # A live leader PID with another start time means the session id now belongs to someone else.
    started = {ref.pid: ref.create_time for ref in refs if not _pid_reused(ref)}
    if not started:
        return []
    members = []
    for proc in psutil.process_iter(["pid", "create_time", "status"]):
        try:
            sid = os.getsid(proc.pid)
        except OSError:
            continue
        leader_start = started.get(sid)
        if leader_start is None or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if proc.info["create_time"] + 0.05 >= leader_start:
            members.append(proc)
    return members


def _pid_reused(ref: ProcessRef) -> bool:
    try:
        return abs(psutil.Process(ref.pid).create_time() - ref.create_time) >= 0.05
    except psutil.Error:
        return False


def stop_sessions(refs: Sequence[ProcessRef], grace_s: float = DEFAULT_GRACE_S) -> list[str]:
    """SIGTERM every member of these sessions, SIGKILL what is left after `grace_s`.

    Returns a description of each process that could not be stopped (normally none).
    """
    members = session_members(refs)
    _signal_all(members, signal.SIGTERM)
    _, alive = psutil.wait_procs(members, timeout=grace_s)
    alive += [p for p in session_members(refs) if p not in alive]  # spawned during the grace period
    _signal_all(alive, signal.SIGKILL)
    _, survivors = psutil.wait_procs(alive, timeout=KILL_WAIT_S)
    return [f"process {p.pid} did not stop" for p in survivors if _still_running(p)]


def _signal_all(procs: Iterable[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        try:
            proc.send_signal(sig)  # psutil checks the PID still has the same start time
        except psutil.Error:
            pass


def _still_running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_until(predicate, timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll `predicate` until it is true or `timeout_s` passes (a bounded loop that sleeps)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
