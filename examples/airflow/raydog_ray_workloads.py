"""Ray Data, Ray Tune and Ray Train as Airflow DAGs, each a Ray job on one warm RayDog cluster.

Three DAGs from this one file, `raydog_ray_data`, `raydog_ray_tune` and `raydog_ray_train`:
- Ray Data: a batch transform (`map_batches`) over a generated dataset (the `rows` param);
- Ray Tune: a small grid sweep over a closed-form objective;
- Ray Train: data-parallel training on CPU with two workers, on numpy.

Each job runs `python -m raydog_workloads.<workload>` on the head. The cluster spec's `runtime_env`
(which the cluster state carries to the job) uploads
`examples/workloads` (found beside this DAG's folder) to the cluster, so the job's driver and every
Ray worker import the workload from that copy: nothing is installed on the nodes but Ray and the
workload's packages. The DAGs ask for the same cluster and reuse key, so a DAG run attaches to the
cluster an earlier one built while it is warm; each teardown releases its run's lease, and the cluster
ends itself `idle_ttl` after the last run left.
"""

from __future__ import annotations

import sys
from pathlib import Path

WORKLOADS = str(Path(__file__).resolve().parents[1] / "workloads")
if WORKLOADS not in sys.path:
    sys.path.insert(0, WORKLOADS)  # for the shared cluster spec; the nodes get the package shipped

import pendulum  # noqa: E402
from airflow.sdk import DAG  # noqa: E402
from raydog_workloads.cluster import CLUSTER, RUNTIME_ENV  # noqa: E402

from raydog_airflow.operators import (  # noqa: E402
    RayDogBuildOperator,
    RayDogShutdownOperator,
    RayDogSubmitJobOperator,
)

# DAG name -> (the workload's module, its arguments, the DAG's params)
WORKLOADS_BY_DAG = {
    "data": ("data_pipeline", " --rows {{ params.rows }}", {"rows": 10_000}),
    "tune": ("tune_sweep", "", {}),
    "train": ("train_run", "", {}),
}

for name, (module, arguments, params) in WORKLOADS_BY_DAG.items():
    with DAG(
        dag_id=f"raydog_ray_{name}",
        schedule=None,
        start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
        catchup=False,
        params=params,
        tags=["raydog", "ray-workloads"],
    ) as dag:
        # The spec's runtime_env travels in the cluster state to the job (whose own would go over it).
        build = RayDogBuildOperator(task_id="build_cluster", spec={**CLUSTER, "runtime_env": RUNTIME_ENV})
        job = RayDogSubmitJobOperator(
            task_id=f"ray_{name}_job",
            cluster_state=build.output,
            entrypoint=f"python -m raydog_workloads.{module}{arguments}",
        )
        shutdown = RayDogShutdownOperator(task_id="shut_down", cluster_state=build.output)
        build.as_setup() >> job >> shutdown.as_teardown(setups=build)
    globals()[dag.dag_id] = dag  # each DAG at module level, where Airflow's DAG processor finds it
