"""One fault DAG under dag.test() in its own process, for the test that SIGKILLs the Airflow task.

It inherits the test session's Airflow configuration, connections and RAYDOG_HOME from the environment.
Run as: python dag_process.py FILE_STEM BACKEND RUN_CONF_JSON
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

if __name__ == "__main__":
    stem, backend, conf = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{stem}.py"
    spec = importlib.util.spec_from_file_location(f"dags_{stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    getattr(module, f"dag_{backend}").test(run_conf=conf)
