# The two commands of the README. Both do all set-up on a fresh Debian machine.
.PHONY: demo test lint benchmarks

demo:  ## the main job: a real workload on a local RayDog cluster (head + 2 workers), grown, shrunk, torn down
	bash scripts/bootstrap.sh
	nox -s demo

test:  ## every test, in one environment per integration (Prefect and Airflow cannot share one), in two lanes
	bash scripts/bootstrap.sh
	bash scripts/test_lanes.sh

lint:
	nox -s lint

benchmarks:  ## every benchmark, results written to benchmarks/results/
	bash scripts/bootstrap.sh
	nox -s benchmarks_airflow benchmarks  # Airflow's figures first: they need an environment of their own
