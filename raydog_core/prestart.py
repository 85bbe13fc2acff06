"""Ready Ray workers for a warm cluster's next run, started on its head as a run leaves.

Ray starts a new worker process for every job's first task, and every run is a job: on two cores that
is about 1.7 s of Python start-up and imports before a warm run's first task, most of the run. Ray's
raylet can start workers that belong to no job yet and hands one to the first job that needs it; it
does so by itself only for the first driver it ever sees. This program asks the head's raylet for
`RAYDOG_WARM_WORKERS` more, so the next run's first task starts at once. The watchdog runs it when a
lease holder releases its lease: the workers start while nobody's run needs the CPU they take, and
serve the run that comes next.

It runs on the head with the head's Python (Ray's own environment), started by the watchdog as
`python3 -c "$RAYDOG_PRESTART_PROGRAM"`. It finds the head's raylet through the head's dashboard and
calls the raylet's `PrestartWorkers` (Ray's internal node-manager API, the one Ray's own prestart
uses; Ray 2.60), with the cluster's token. Only workers with no runtime_env are started: a run with a
runtime_env of its own gets its workers from Ray as usual. Any failure is printed and ends this
program, never the watchdog.

| variable | meaning |
| --- | --- |
| `RAYDOG_WARM_WORKERS` | how many workers to start |
| `RAYDOG_IDLE_TTL_S` | how long a worker nobody uses is kept: the cluster's idle TTL (at least a minute) |
| `RAYDOG_DASHBOARD_PORT` | the head's Ray dashboard, which says where the raylet listens |
| `RAY_AUTH_TOKEN` | the cluster's Ray token, for the dashboard and the raylet |
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request

KEEP_AT_LEAST_S = 60
RPC_TIMEOUT_S = 30
DASHBOARD_WAIT_S = 120


def head_raylet(dashboard_port: int, token: str | None, wait_s: float = DASHBOARD_WAIT_S) -> str:
    """`address:port` of the head's raylet, as the head's dashboard lists it; the first run arrives
    while the head starts, so a dashboard not up yet is waited for (bounded)."""
    request = urllib.request.Request(f"http://127.0.0.1:{dashboard_port}/nodes?view=summary")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    deadline = time.monotonic() + wait_s
    while True:
        try:
            with urllib.request.urlopen(request, timeout=RPC_TIMEOUT_S) as response:
                nodes = json.loads(response.read())["data"]["summary"]
            for node in nodes:
                raylet = node.get("raylet") or {}
                if raylet.get("isHeadNode") and raylet.get("state") == "ALIVE":
                    return f"{raylet['nodeManagerAddress']}:{raylet['nodeManagerPort']}"
            raise LookupError("the dashboard lists no live head node")
        except (OSError, LookupError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def prestart(raylet: str, count: int, keep_s: int, token: str | None) -> None:
    """Ask the raylet for `count` Python workers of no job and no runtime_env, kept `keep_s` unused."""
    import grpc
    from ray.core.generated import common_pb2, node_manager_pb2, node_manager_pb2_grpc

    request = node_manager_pb2.PrestartWorkersRequest(
        language=common_pb2.PYTHON, num_workers=count, keep_alive_duration_secs=keep_s
    )
    metadata = [("authorization", f"Bearer {token}")] if token else []
    with grpc.insecure_channel(raylet) as channel:
        stub = node_manager_pb2_grpc.NodeManagerServiceStub(channel)
        stub.PrestartWorkers(request, timeout=RPC_TIMEOUT_S, metadata=metadata)


def main() -> int:
    count = int(os.environ.get("RAYDOG_WARM_WORKERS") or 0)
    keep_s = max(int(float(os.environ.get("RAYDOG_IDLE_TTL_S") or 0)), KEEP_AT_LEAST_S)
    dashboard_port = int(os.environ.get("RAYDOG_DASHBOARD_PORT") or 0)
    token = os.environ.get("RAY_AUTH_TOKEN") or None
    if count <= 0 or not dashboard_port:
        return 0
    try:
        raylet = head_raylet(dashboard_port, token)
        prestart(raylet, count, keep_s, token)
    except Exception as error:  # noqa: BLE001 - a missed head start for the next run, nothing more
        print(f"raydog: could not start {count} ready Ray worker(s) for the next run: {error}", flush=True)
        return 1
    print(f"raydog: started {count} ready Ray worker(s) for the next run (kept {keep_s}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
