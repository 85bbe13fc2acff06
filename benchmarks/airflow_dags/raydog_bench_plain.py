"""Benchmark anchor DAG: the Ray work of `raydog_bench_raydog` by plain means, with BashOperators.

Sequential `ray start` calls (head, then one worker) with the same resources, explicit free ports and
their own temp dir, `ray job submit`, and a teardown that stops exactly the processes it started: each
`ray start` runs in a session of its own (setsid), and the teardown signals that session's members by
PID — SIGTERM, the same 1 s grace as RayDog's teardown, then SIGKILL — never `ray stop`.
The benchmark passes ports, temp dir, the Python environment's bin directory and the entrypoint as params.
"""

from __future__ import annotations

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import DAG

ENVIRONMENT = """set -euo pipefail
export PATH="{{ params.bin }}:$PATH" RAY_AUTH_MODE=disabled
d="{{ params.temp_dir }}"
"""
NODE_ARGS = (
    "--node-ip-address=127.0.0.1 --num-cpus=1 --num-gpus=0 --memory=536870912 "
    "--object-store-memory=83886080 --disable-usage-stats --min-worker-port=0 --max-worker-port=0"
)
START = (
    ENVIRONMENT
    + f"""mkdir -p "$d/head" "$d/worker"
cd "$d"  # Ray's processes keep this as their working directory; Airflow's for the task is deleted
setsid ray start --head --port={{{{ params.gcs }}}} --temp-dir="$d/head" {NODE_ARGS} \\
  --include-dashboard=true --dashboard-host=127.0.0.1 --dashboard-port={{{{ params.dashboard }}}} \\
  --ray-client-server-port={{{{ params.client }}}} {{{{ params.head_ports }}}} > "$d/head.log" 2>&1 &
echo $! > "$d/head.sid"
wait $!
setsid ray start --address=127.0.0.1:{{{{ params.gcs }}}} --temp-dir="$d/worker" {NODE_ARGS} \\
  {{{{ params.worker_ports }}}} > "$d/worker.log" 2>&1 &
echo $! > "$d/worker.sid"
wait $!
"""
)
SUBMIT = (
    ENVIRONMENT
    + "ray job submit --address=http://127.0.0.1:{{ params.dashboard }} -- {{ params.entrypoint }}\n"
)
STOP = (
    ENVIRONMENT
    + """members() { for sid in "$d"/*.sid; do [ -f "$sid" ] && ps -o pid= -s "$(cat "$sid")"; done; true; }
gone() { [ -z "$(members)" ]; }
left="$(members)"; [ -z "$left" ] || kill -TERM $left 2>/dev/null || true
for _ in $(seq 10); do gone && break; sleep 0.1; done
left="$(members)"; [ -z "$left" ] || kill -KILL $left 2>/dev/null || true
for _ in $(seq 50); do gone && break; sleep 0.1; done
gone || { echo "processes left: $(members)" >&2; exit 1; }
rm -rf "$d"
"""
)

with DAG(
    dag_id="raydog_bench_plain", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")
) as dag:
    start = BashOperator(task_id="start_cluster", bash_command=START)
    job = BashOperator(task_id="submit_job", bash_command=SUBMIT)
    stop = BashOperator(task_id="stop_cluster", bash_command=STOP)
    start.as_setup() >> job >> stop.as_teardown(setups=start)
