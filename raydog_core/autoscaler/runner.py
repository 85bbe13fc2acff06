"""Ray's command runner for the local backend: commands run in a node's own home on this machine.

Ray's CLI reaches nodes only through a command runner (`ray exec`, `ray submit`, `ray attach`,
`ray rsync-up`, and the `ray stop` that `ray down` sends to the head). Locally there is no SSH: a
command runs in `bash` with `HOME` set to the node's home, so `~/script.py` means the same thing to
`ray submit`'s copy and its `python ~/script.py`. A `ray stop`, even behind Ray's `export ...;`
prefix, never runs: it would kill every Ray process on the machine. It becomes a stop of this node.

Each command runs in a session of its own, like a command on a remote node, recorded under
$RAYDOG_HOME (`raydog_core.commands`) and bounded by the cluster's lifetime, and is stopped with the
cluster whoever shuts it down: a `ray up` interrupted in its setup commands, or a killed `ray exec`,
leaves no orphaned command running here.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click
from ray.autoscaler._private.subprocess_output_util import ProcessRunnerError
from ray.autoscaler.command_runner import CommandRunnerInterface

from raydog_core import commands, processes
from raydog_core.node_env import clean_environment
from raydog_core.private_files import PRIVATE_UMASK, make_tree_private, private_dir

log = logging.getLogger("raydog")

RAY_STOP = re.compile(r"(^|[;&|]\s*)ray\s+stop\b")
ClusterOfCommand = tuple[str | None, float | None]  # (cluster id, seconds of its lifetime left)
STOPPED = -signal.SIGTERM  # the exit status of a command stopped with its cluster


def is_ray_stop(command: str) -> bool:
    """True for `ray stop`, also as Ray sends it: `export A=1; export B=2; ray stop --force`."""
    return bool(RAY_STOP.search(command.strip()))


class RunningCommands:
    """The commands of one cluster's runners still running, so tearing the cluster down stops them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refs: set[processes.ProcessRef] = set()
        self._stopped: set[processes.ProcessRef] = set()
        self._closed = False

    def run(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        with_output: bool,
        cluster: ClusterOfCommand = (None, None),
    ) -> tuple[int, bytes]:
        """Run to completion; an interrupt (Ctrl+C in `ray exec`) stops the command's whole session.

        `cluster` is (cluster id, seconds of lifetime left): the command is recorded under that
        cluster and ended when its lifetime is over.
        """
        cluster_id, lifetime_left_s = cluster
        with self._lock:
            if self._closed:  # Ray's updater thread goes on with its next command after a teardown
                raise ProcessRunnerError("the cluster was shut down", "cluster_shut_down", command=argv[-1])
            proc = subprocess.Popen(
                commands.bounded(argv, lifetime_left_s),
                cwd=cwd,
                env=dict(env),
                stdout=subprocess.PIPE if with_output else None,
                start_new_session=True,
                umask=PRIVATE_UMASK,  # the command's files in the node's home stay private, as a node's
            )
            ref = processes.ProcessRef(proc.pid, processes.process_create_time(proc.pid))
            self._refs.add(ref)
            record = commands.record(cluster_id, ref) if cluster_id else None
        try:
            output, _ = proc.communicate()
            # A stop from this process may reap the command before Popen does (psutil waits on its
            # own children), which Popen then reports as exit 0: a stopped command never succeeded.
            stopped = ref in self._stopped or (record is not None and not record.exists())
            return (STOPPED if stopped and proc.returncode == 0 else proc.returncode), output or b""
        except BaseException:
            processes.stop_sessions([ref])
            proc.wait()
            raise
        finally:
            with self._lock:
                self._refs.discard(ref)
            if record is not None:
                commands.forget(record)

    def stop_all(self, close: bool = False) -> None:
        """Stop every running command; with `close`, refuse new ones (the process is exiting)."""
        with self._lock:
            self._closed = self._closed or close
            refs, self._refs = list(self._refs), set()
            self._stopped.update(refs)
        if refs:
            processes.stop_sessions(refs)


class LocalCommandRunner(CommandRunnerInterface):
    """Runs Ray's commands for one node of a local cluster; see the module docstring."""

    def __init__(
        self,
        node_id: str,
        home: Path,
        environment: Callable[[], Mapping[str, str]],
        stop_node: Callable[[str], None],
        running: RunningCommands,
        cluster: Callable[[], ClusterOfCommand] = lambda: (None, None),
    ) -> None:
        self.node_id = node_id
        self._commands = running
        self._cluster = cluster  # (cluster id, lifetime left), asked per command
        self.home = home
        self._environment = environment  # evaluated per command: ports are known once the head is up
        self._stop_node = stop_node

    def run(
        self,
        cmd: str | None = None,
        timeout: int = 120,
        exit_on_fail: bool = False,
        port_forward: Any = None,
        with_output: bool = False,
        environment_variables: Mapping[str, object] | None = None,
        run_env: str = "auto",
        ssh_options_override_ssh_key: str = "",
        shutdown_after_run: bool = False,
    ) -> str:
        command = cmd or "bash"
        if is_ray_stop(command):
            log.info("`ray stop` for node %s: stopping only that node", self.node_id)
            self._stop_node(self.node_id)
            return ""
        if environment_variables:
            exports = "; ".join(f"export {k}={_quote(v)}" for k, v in environment_variables.items())
            command = f"{exports}; {command}"
        private_dir(self.home)
        env = self.environment()
        # No timeout: Ray's `timeout` bounds an SSH connection, not the command (a `ray submit` script).
        returncode, output = self._commands.run(
            ["bash", "-c", command], env, self.home, with_output, self._cluster()
        )
        if returncode != 0:
            message = f"command on node {self.node_id} failed with code {returncode}: {cmd}"
            if exit_on_fail:
                raise click.ClickException(message) from None
            raise ProcessRunnerError(message, "command_failed", code=returncode, command=cmd)
        return output.decode(errors="replace") if with_output else ""

    def run_rsync_up(self, source: str, target: str, options: Mapping[str, Any] | None = None) -> None:
        _copy(Path(source).expanduser(), self._node_path(target), source.endswith("/"))
        make_tree_private(self.home)  # under $RAYDOG_HOME: private, whatever the source's modes

    def run_rsync_down(self, source: str, target: str, options: Mapping[str, Any] | None = None) -> None:
        _copy(self._node_path(source), Path(target).expanduser(), source.endswith("/"))

    def remote_shell_command_str(self) -> str:
        return f"cd {self.home} && HOME={self.home} bash"

    def run_init(self, *, as_head: bool, file_mounts: Mapping[str, str], sync_run_yet: bool) -> bool | None:
        return None

    def environment(self) -> dict[str, str]:
        env = clean_environment()
        env.update(self._environment())
        env["HOME"] = str(self.home)
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        return env

    def _node_path(self, remote: str) -> Path:
        """A path on the node: `~/x` and relative paths are in the node's home; nothing else is allowed."""
        if remote.startswith("~"):
            remote = remote[1:].lstrip("/")
        if Path(remote).is_absolute():
            raise click.ClickException(
                f"{remote!r} is outside node {self.node_id}'s home: local nodes share this machine, so only "
                "paths under ~/ are allowed in file_mounts, rsync and files_to_upload"
            )
        path = (self.home / remote).resolve()
        if self.home.resolve() not in (path, *path.parents):
            raise click.ClickException(f"{remote!r} leaves node {self.node_id}'s home")
        return path


def _copy(source: Path, target: Path, contents_only: bool) -> None:
    """rsync's meaning of `source[/] target` for files and folders."""
    if source.is_dir():
        destination = target if contents_only or not target.exists() else target / source.name
        shutil.copytree(source, destination, dirs_exist_ok=True)
        return
    if target.is_dir():
        target = target / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source, target)


def _quote(value: object) -> str:
    import json
    import shlex

    text = value if isinstance(value, str) else json.dumps(value)
    return shlex.quote(text)
