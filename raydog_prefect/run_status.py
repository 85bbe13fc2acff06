"""Has the Prefect flow run that owns a cluster finished? Asked of the Prefect API.

Plugged into `raydog reap --run-finished prefect` through the `raydog.run_status` entry point: a
cluster whose flow run is over (completed, failed, crashed or cancelled) has outlived its purpose. A
cluster whose run cannot be looked up is never selected: the reaper only acts on certainty. Plain HTTP,
so a reaper in cron needs no Prefect client settings beyond the API URL (and key, on Prefect Cloud).
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request

from raydog_core.backends.base import ClusterRecord
from raydog_core.reaper import RunFinished
from raydog_prefect.labels import FLOW_RUN_LABEL

log = logging.getLogger("raydog")

PREFECT_RUN_LABEL = FLOW_RUN_LABEL
PREFECT_FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})
TIMEOUT_S = 10.0


def prefect_run_finished(api_url: str | None = None, api_key: str | None = None) -> RunFinished:
    """A check that asks the Prefect API (default: $PREFECT_API_URL) for the state of a cluster's flow run."""
    base = (api_url or os.environ.get("PREFECT_API_URL") or "").rstrip("/")
    if not base:
        raise ValueError("--api-url or PREFECT_API_URL is needed to ask Prefect about flow runs")
    key = api_key or os.environ.get("PREFECT_API_KEY")

    def finished(record: ClusterRecord) -> bool:
        run_id = record.labels.get(PREFECT_RUN_LABEL)
        if not run_id:
            return False
        request = urllib.request.Request(f"{base}/flow_runs/{run_id}")
        if key:
            request.add_header("Authorization", f"Bearer {key}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                state = json.loads(response.read()).get("state") or {}
        except (urllib.error.URLError, OSError, ValueError) as error:
            log.warning(
                "cannot ask Prefect about flow run %s (%s): leaving cluster %s alone",
                run_id,
                error,
                record.name,
            )
            return False
        return state.get("type") in PREFECT_FINAL_STATES

    return finished
