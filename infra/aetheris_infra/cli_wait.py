"""``--wait`` of ``aetheris start`` and ``aetheris status``: poll the API until the job is done.

``start --wait`` also stops when the job parks on a signal (only a signal moves it: waiting on
would only block); ``status --wait`` waits for the end, since a job just signalled may still show
``WAITING`` for a moment. Either way a job that is not finished exits ``EXIT_RUNNING`` (5), and
stderr says why: the signal to send, or the timeout that passed.
"""

from __future__ import annotations

import time
from typing import Any

from aetheris.events import JobStatus
from aetheris_infra.cli_api import EXIT_BAD, EXIT_OK, EXIT_RUNNING, Api, job_path
from aetheris_infra.cli_render import Out, show_job


def wait_and_show(api: Api, out: Out, job_id: str, timeout: float, *, until_parked: bool) -> int:
    """Wait for the end (with ``until_parked``, or a signal wait), show the job, say why if it is
    not finished."""
    job = _wait(api, job_id, timeout, until_parked)
    out.emit(job, lambda: show_job(out, job))
    status = JobStatus(job["status"])
    if status.is_terminal:
        return EXIT_OK if status is JobStatus.COMPLETED else EXIT_BAD
    if until_parked and job.get("waiting_for"):
        name = job["waiting_for"]
        out.errors.print(
            f"job {job_id} is WAITING for signal {name!r}: only a signal moves it. Send it with "
            f"`aetheris signal {job_id} {name} --payload JSON`, then `aetheris status {job_id} --wait`."
        )
    else:
        waits = f" (waiting for signal {job['waiting_for']!r})" if job.get("waiting_for") else ""
        out.errors.print(
            f"gave up waiting after {timeout:g} s: job {job_id} is still {status.value}{waits}. "
            f"Wait longer with `aetheris status {job_id} --wait --timeout SECONDS`."
        )
    return EXIT_RUNNING


def _wait(api: Api, job_id: str, timeout: float, until_parked: bool) -> dict[str, Any]:
    """Poll until the job ends, ``timeout`` seconds pass, or (``until_parked``) it parks on a signal."""
    deadline, pause = time.monotonic() + timeout, 0.05
    while True:
        job: dict[str, Any] = api.get(job_path(job_id))
        parked = until_parked and job["status"] == JobStatus.WAITING and job.get("waiting_for")
        if JobStatus(job["status"]).is_terminal or parked or time.monotonic() >= deadline:
            return job
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(1.0, pause * 2)
