"""Real Airflow for the provider's end-to-end tests: one temporary AIRFLOW_HOME and database per session.

Airflow reads its configuration at import time, so the environment is set here, before any test module
imports `airflow`. The DAGs folder (a DAG bundle, which dag.test() needs) holds the example DAGs and the
test DAGs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_HOME = Path(tempfile.mkdtemp(prefix="airflow-home-"))
DAGS_FOLDER = _HOME / "dags"
DAGS_FOLDER.mkdir()
for source in [*(ROOT / "examples" / "airflow").glob("*.py"), *(Path(__file__).parent / "dags").glob("*.py")]:
    shutil.copy(source, DAGS_FOLDER / source.name)
# The workload examples' package beside the DAGs' folder, as in the repository (their DAGs ship it from
# there): in place before any DAG file is imported, which puts it on sys.path.
shutil.copytree(
    ROOT / "examples" / "workloads", _HOME / "workloads", ignore=shutil.ignore_patterns("__pycache__")
)

os.environ.update(
    {
        "AIRFLOW_HOME": str(_HOME),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
        "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(_HOME / "logs"),
    }
)
os.environ.pop("AIRFLOW_CONN_RAYDOG_DEFAULT", None)


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """`airflow db migrate` once per session, into the temporary AIRFLOW_HOME."""
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    yield _HOME
    shutil.rmtree(_HOME, ignore_errors=True)
