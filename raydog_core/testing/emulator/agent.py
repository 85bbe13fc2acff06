"""The emulated YellowDog agent: runs a task as a local process session, as the real agent runs it.

The agent writes the task's data to `taskdata.txt` in a fresh working directory, runs the task type's
command with the task's arguments (`bash taskdata.txt` for RayDog) and captures output in
`taskoutput.txt`. Each instance has its own HOME and TMPDIR, like a machine of its own, and sees the
emulator's Python environment first on PATH, like an image with the same packages installed.

Once a task's process is gone, the agent uploads the files the task declared in `data.outputs`
(`TaskDataOutput`: a `source` in the task's working directory, a `destination` URL, `alwaysUpload` to
upload after a failure too), as the real agent does: the node itself holds no credential for the store.
The emulator's store is this host's file system, so it accepts `file://` destinations.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

from raydog_core import node_env, processes
from raydog_core.testing.emulator.entities import Instance, Task

log = logging.getLogger("raydog.emulator")

DEFAULT_TASK_COMMANDS: dict[str, list[str]] = {"bash": ["bash"], "python": [sys.executable]}
FAILING_COMMAND = ["bash", "-c", "echo 'emulator: injected task failure' >&2; exit 1"]


class Agent:
    """Starts and stops task processes; never touches a process it did not start."""

    def __init__(self, root: Path, task_commands: Mapping[str, Sequence[str]] | None = None) -> None:
        self.root = root
        self.task_commands = {k: list(v) for k, v in (task_commands or DEFAULT_TASK_COMMANDS).items()}
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._lock = threading.Lock()

    def supports(self, task_type: str | None) -> bool:
        return task_type in self.task_commands

    def start(self, task: Task, instance: Instance, fail: bool = False) -> processes.ProcessRef:
        machine = self.root / f"i{instance.number}"
        home, tmp = machine / "home", machine / "tmp"
        sandbox = machine / "tasks" / task.id.rsplit(":", 2)[-2][:8]
        for directory in (home, tmp, sandbox):
            directory.mkdir(parents=True, exist_ok=True)
        (sandbox / "taskdata.txt").write_text(task.spec.get("taskData") or "")
        command = (
            FAILING_COMMAND
            if fail
            else [*self.task_commands[task.spec["taskType"]], *task.spec.get("arguments", [])]
        )
        proc, ref = processes.start_session(
            command,
            self._environment(task, instance, home, tmp),
            str(sandbox),
            str(sandbox / "taskoutput.txt"),
        )
        with self._lock:
            self._children[task.id] = proc
        task.sandbox = str(sandbox)
        instance.home = str(home)
        return ref

    def exit_code(self, task: Task) -> int | None:
        """The task's exit code once it has exited (None while it runs)."""
        with self._lock:
            proc = self._children.get(task.id)
        if proc is None:
            return None
        code = proc.poll()
        if code is not None and task.process and processes.session_members([task.process]):
            return None  # the script exited but left children running: wait for the whole session
        return code

    def stop(
        self, tasks: Sequence[Task], grace_s: float = processes.DEFAULT_GRACE_S, upload: bool = True
    ) -> list[str]:
        """Stop these tasks' process sessions (SIGTERM, then SIGKILL after `grace_s`), then upload their
        `alwaysUpload` outputs (`upload=False`: the machine is lost, and its agent with it)."""
        refs = [task.process for task in tasks if task.process is not None]
        failures = processes.stop_sessions(refs, grace_s=grace_s) if refs else []
        for task in tasks:
            if self._forget(task) and upload:
                self._upload_outputs(task, succeeded=False)
        return failures

    def finished(self, task: Task, exit_code: int) -> None:
        """The task's process exited by itself: upload its outputs (on failure, the `alwaysUpload` ones)."""
        if self._forget(task):
            self._upload_outputs(task, succeeded=exit_code == 0)

    def forget(self, task: Task) -> None:
        self._forget(task)

    def _forget(self, task: Task) -> bool:
        with self._lock:
            proc = self._children.pop(task.id, None)
        if proc is not None:
            proc.poll()
        return proc is not None

    def _upload_outputs(self, task: Task, succeeded: bool) -> None:
        outputs = (task.spec.get("data") or {}).get("outputs") or []
        if task.sandbox is None:
            return
        sandbox = Path(task.sandbox).resolve()
        for output in outputs:
            if not (succeeded or output.get("alwaysUpload")):
                continue
            source = (sandbox / str(output.get("source", ""))).resolve()
            destination = urlparse(str(output.get("destination", "")))
            if not source.is_relative_to(sandbox) or not source.is_file():
                continue  # nothing there (the real agent reports a missing output the same way: not at all)
            if destination.scheme != "file" or not destination.path.startswith("/"):
                log.warning("emulator: task %s output %s: only file:// destinations", task.id, destination)
                continue
            target = Path(destination.path)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            except OSError as error:
                log.warning("emulator: task %s output %s not uploaded: %s", task.id, target, error)

    def _environment(self, task: Task, instance: Instance, home: Path, tmp: Path) -> dict[str, str]:
        env = node_env.clean_environment()
        env.update(task.spec.get("environment") or {})
        bin_dir = str(Path(sys.executable).parent)
        env.update(
            {
                "HOME": str(home),
                "TMPDIR": str(tmp),
                "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")]),
                "YD_TASK_ID": task.id,
                "YD_TASK_GROUP_ID": task.group.id,
                "YD_WORK_REQUIREMENT_ID": task.group.requirement.id,
                "YD_INSTANCE_ID": instance.instance_id,
                "YD_NODE_ID": instance.node_id,
                "YD_WORKER_ID": instance.worker_id,
                "YD_PROVIDER": "ON_PREMISE",
                "YD_REGION": "local",
                "YD_INSTANCE_TYPE": "emulated",
                "YD_WORKER_SLOT": "1",
                "YD_AGENT_DATA": str(home / "data"),
                "YD_AGENT_HOME": str(home),
                "YD_EMU_PRIVATE_IP": instance.ip,
                "YD_EMU_PUBLIC_IP": instance.ip,
            }
        )
        return env
