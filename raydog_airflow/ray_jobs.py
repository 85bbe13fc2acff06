"""Ray jobs from Airflow tasks: a submission id per task, re-attaching on retry, and following a job.

The same `follow_job` coroutine runs inside a worker (`asyncio.run`) and inside the triggerer, so both
modes stream the job's output into the task log the same way and never block an event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

log = logging.getLogger(__name__)

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
FAILED_STATUSES = frozenset({"FAILED", "STOPPED"})


def submission_id_base(dag_id: str, run_id: str, task_id: str, map_index: int | None = -1) -> str:
    """Readable and unique per task instance; the same for every try of it."""
    readable = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{dag_id}-{task_id}")[:80]
    digest = hashlib.sha256(f"{dag_id}\0{run_id}\0{task_id}\0{map_index}".encode()).hexdigest()[:12]
    return f"raydog-{readable}-{digest}"


def submission_id_for_try(base: str, try_number: int) -> str:
    return base if try_number <= 1 else f"{base}-try{try_number}"


def submit_or_attach(
    client: JobSubmissionClient, base: str, try_number: int, submit_kwargs: Mapping[str, Any]
) -> tuple[str, bool]:
    """Submit this try's job, or re-attach to an earlier try's job that has not failed; (job id, attached).

    A worker that dies while its job runs leaves the job running: the retry follows that job to its end
    instead of starting a second copy. A job that already failed is not re-attached to (except by the
    same try): the retry then really retries.
    """
    known = {job.submission_id: job for job in client.list_jobs()}
    for number in range(max(try_number, 1), 0, -1):
        job_id = submission_id_for_try(base, number)
        job = known.get(job_id)
        if job is None:
            continue
        if str(job.status) in FAILED_STATUSES and number < try_number:
            break
        return job_id, True
    job_id = submission_id_for_try(base, try_number)
    try:
        _submit(client, job_id, submit_kwargs)
    except RuntimeError:
        # Another attempt of this very try submitted it in the meantime: follow that one.
        if job_id not in {job.submission_id for job in client.list_jobs()}:
            raise
        return job_id, True
    return job_id, False


# Ray's Jobs API answers 500 "No available agent to submit job" while the head's job agent has not
# registered yet, seconds after a head starts (Ray's SDK raises a plain RuntimeError, so the text is all
# there is to match). It is worth waiting for, a bounded while; any other refusal is final.
AGENT_NOT_READY = "No available agent to submit job"
AGENT_WAIT_S = 60.0


def _submit(
    client: JobSubmissionClient, job_id: str, submit_kwargs: Mapping[str, Any], wait_s: float = AGENT_WAIT_S
) -> None:
    deadline = time.monotonic() + wait_s
    delay = 1.0
    while True:
        try:
            client.submit_job(submission_id=job_id, **submit_kwargs)
            return
        except RuntimeError as error:
            if AGENT_NOT_READY not in str(error) or time.monotonic() + delay > deadline:
                raise
            log.info("Ray's job agent on the head is not ready yet; submitting again in %.0f s", delay)
            time.sleep(delay)
            delay = min(delay * 2, 8.0)


async def follow_job(
    client: JobSubmissionClient,
    job_id: str,
    emit: Callable[[str], None],
    *,
    stream_logs: bool = True,
    poll_interval: float = 2.0,
) -> JobDetails:
    """Stream the job's output line by line to `emit` until it ends; returns its final details."""
    if stream_logs:
        try:
            async for chunk in client.tail_job_logs(job_id):
                for line in chunk.splitlines():
                    emit(line)
        except (TimeoutError, RuntimeError, OSError) as error:
            emit(
                f"[raydog] the log stream of job {job_id} ended early ({type(error).__name__}); waiting for the job"
            )
    while True:
        details = await asyncio.to_thread(client.get_job_info, job_id)
        if str(details.status) in TERMINAL_STATUSES:
            return details
        await asyncio.sleep(poll_interval)


def job_outcome(job_id: str, status: str, message: str | None) -> str:
    """One line for the task log and for the error a failed job raises."""
    text = f"Ray job {job_id} ended {status}"
    return f"{text}: {message}" if message else text
