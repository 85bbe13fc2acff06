"""Fault injection for offline tests of flows, DAGs and `ray up`: stand-in node scripts that start no Ray,
and a node whose machine dies at once, on the local backend or the YellowDog emulator."""

from __future__ import annotations

import signal

from raydog_core import processes
from raydog_core.backends.local.backend import LocalBackend
from raydog_core.testing.emulator import Emulator

# Stand-in node scripts for faults that happen before Ray would run (they start no Ray at all).
FAILING_SCRIPT = "#!/usr/bin/env bash\necho 'node script: cannot start (on purpose)' >&2\nexit 3\n"
SLEEP_SCRIPT = "#!/usr/bin/env bash\nexec sleep 600\n"
# A head that only accepts connections on its GCS port: enough for the builder to start the workers.
LISTEN_SCRIPT = '#!/usr/bin/env bash\nexec python -m http.server "$RAYDOG_GCS_PORT" --bind 127.0.0.1\n'


def kill_node(
    cluster_id: str, node_id: str, *, local: LocalBackend | None = None, emulator: Emulator | None = None
) -> None:
    """The machine of this node dies at once (no script trap, no Ray drain): its instance on the emulator,
    or SIGKILL to every process of its local session (checked by PID and start time, nothing else)."""
    if emulator is not None:
        emulator.kill_instance_of_task(node_id)
        return
    if local is None:
        raise ValueError("kill_node needs the local backend or the emulator the node runs on")
    ref = local.node_process(cluster_id, node_id)
    members = processes.session_members([ref])
    if not members:
        raise LookupError(f"node {node_id} has no live process to kill")
    for proc in members:
        proc.send_signal(signal.SIGKILL)  # psutil re-checks the PID's start time before signalling
