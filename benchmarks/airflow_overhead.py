"""Wall time of an Airflow DAG using RayDog's operators (build, submit job, shut down) against an anchor
DAG doing the same Ray work by plain means (BashOperators: `ray start` head and worker, `ray job submit`,
stop by PID), both run with real Airflow `dag.test()` in this one run.

Same Ray work on both sides: head + 1 worker of 1 CPU / 512 MiB / 80 MiB object store each, explicit
free ports and a private temp dir per node, no token auth, the same job. Runs alternate A B B A ... so
warm-up and drift hit both; the ratio is of the medians. The DAGs are in `benchmarks/airflow_dags/`.

Needs the `airflow` extra (Airflow and Prefect cannot share one environment), hence its own command:
`python -m benchmarks.airflow_overhead [--repetitions 3] [--json benchmarks/results/airflow.json]`
(nox: `nox -s benchmarks_airflow`).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DAGS = Path(__file__).parent / "airflow_dags"
RAYDOG_DAG = "raydog_bench_raydog"
PLAIN_DAG = "raydog_bench_plain"
# The job: a few tasks spread over the cluster; runs on the head with the head's PATH.
ENTRYPOINT = (
    'python -c "import ray; ray.init(); f = ray.remote(lambda x: x * x); '
    "print('squares', ray.get([f.remote(i) for i in range(16)]), 'nodes', len(ray.nodes()))\""
)


def _prepare_airflow() -> Path:
    """A private AIRFLOW_HOME with the benchmark DAGs and a migrated database (before importing Airflow)."""
    home = Path(tempfile.mkdtemp(prefix="airflow-bench-"))
    dags = home / "dags"
    dags.mkdir()
    for source in DAGS.glob("*.py"):
        shutil.copy(source, dags / source.name)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
            "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
        }
    )
    os.environ.pop("AIRFLOW_CONN_RAYDOG_DEFAULT", None)  # RayDog's hook: the local backend
    os.environ.setdefault("RAYDOG_HOME", str(home / "raydog"))
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    return home


def _load_dag(home: Path, dag_id: str) -> Any:
    spec = importlib.util.spec_from_file_location(f"bench_{dag_id}", home / "dags" / f"{dag_id}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.dag


def _plain_conf() -> dict[str, Any]:
    """Ports and temp dir for the anchor's nodes, chosen as RayDog chooses them (free ports, short dir)."""
    from raydog_core.ports import free_ports

    gcs, dashboard, client, *node_ports = free_ports(15)

    def node_args(ports: list[int]) -> str:
        names = ("node-manager", "object-manager", "metrics-export", "runtime-env-agent")
        names += ("dashboard-agent-grpc", "dashboard-agent-listen")
        return " ".join(f"--{name}-port={port}" for name, port in zip(names, ports, strict=True))

    return {
        "bin": str(Path(sys.executable).parent),
        "temp_dir": f"/tmp/rb-{secrets.token_hex(4)}",
        "gcs": gcs,
        "dashboard": dashboard,
        "client": client,
        "head_ports": node_args(node_ports[:6]),
        "worker_ports": node_args(node_ports[6:12]),
        "entrypoint": ENTRYPOINT,
    }


def _timed_run(home: Path, dag_id: str) -> dict[str, Any]:
    """One `dag.test()`: wall seconds, and each task's own seconds; raises unless every task succeeded."""
    conf = _plain_conf() if dag_id == PLAIN_DAG else {"entrypoint": ENTRYPOINT}
    dag = _load_dag(home, dag_id)
    started = time.perf_counter()
    dag_run = dag.test(run_conf=conf)
    wall = time.perf_counter() - started
    instances = dag_run.get_task_instances()
    states = {ti.task_id: str(ti.state) for ti in instances}
    if str(dag_run.state) != "success" or set(states.values()) != {"success"}:
        raise RuntimeError(f"{dag_id} did not succeed: {states} (logs under {home / 'logs'})")
    if dag_id == PLAIN_DAG and Path(conf["temp_dir"]).exists():
        raise RuntimeError(f"{dag_id} left {conf['temp_dir']} behind")
    tasks = {ti.task_id: round((ti.end_date - ti.start_date).total_seconds(), 2) for ti in instances}
    return {"wall_s": wall, "tasks_s": tasks}


def _leaks() -> list[str]:
    from raydog_core.backends.local.backend import LocalBackend

    return LocalBackend().live_resources()


def _task_medians(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Each task's median seconds: where the time goes (Airflow's own share is wall minus their sum)."""
    return {
        task: round(statistics.median(s["tasks_s"][task] for s in samples), 2)
        for task in samples[0]["tasks_s"]
    }


def run(repetitions: int = 3) -> dict[str, Any]:
    home = _prepare_airflow()
    try:
        order = [(PLAIN_DAG, RAYDOG_DAG), (RAYDOG_DAG, PLAIN_DAG)]
        samples: dict[str, list[dict[str, Any]]] = {PLAIN_DAG: [], RAYDOG_DAG: []}
        for repetition in range(repetitions):
            for dag_id in order[repetition % 2]:
                samples[dag_id].append(_timed_run(home, dag_id))
                print(f"   {dag_id}: {samples[dag_id][-1]}", flush=True)
        leaks = _leaks()
        if leaks:
            raise RuntimeError(f"RayDog left processes behind: {leaks}")
    finally:
        shutil.rmtree(home, ignore_errors=True)
    raydog = [s["wall_s"] for s in samples[RAYDOG_DAG]]
    plain = [s["wall_s"] for s in samples[PLAIN_DAG]]
    return {
        "raydog_dag_s": [round(s, 2) for s in raydog],
        "plain_dag_s": [round(s, 2) for s in plain],
        "raydog_median_s": round(statistics.median(raydog), 2),
        "plain_median_s": round(statistics.median(plain), 2),
        "ratio": round(statistics.median(raydog) / statistics.median(plain), 3),
        "raydog_task_medians_s": _task_medians(samples[RAYDOG_DAG]),
        "plain_task_medians_s": _task_medians(samples[PLAIN_DAG]),
        "work": "head + 1 worker (1 CPU, 512 MiB, 80 MiB object store each), one 16-task Ray job",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.airflow_overhead", description=__doc__)
    parser.add_argument("--repetitions", type=int, default=3, help="runs of each DAG (alternating)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    results = run(args.repetitions)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"airflow_overhead": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
