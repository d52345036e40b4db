"""HTTP API route ``GET /jobs/{job_id}/trace``: a job's operations with their attempts (crashed ones
too), effects (inputs and outputs), signals, waits, timers, compensations and its causal tree, as
``aetheris.trace.load_trace`` reads them from the log and the effect ledger.

Two reads: one consistent Query for the job item, its log and the open slot claim, then the
ledger. An effect claimed after the first read shows up on an operation with no outcome yet
(``running``), which is what it is. Values are redacted by key name and cut to a preview past
``max_value_bytes``; a trace that would not fit in a Lambda answer is refused with a pointer to the
paginated log. ``operation`` and ``effect`` narrow the answer to what matches.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from aetheris import hosting
from aetheris._tenancy import owns
from aetheris.errors import AetherisError, JobNotFound
from aetheris.handlers.api_models import JobId, answers
from aetheris.handlers.api_tenancy import tenant_of_request
from aetheris.trace import Trace, load_trace

# A Lambda's answer is capped at 6 MB; leave room for the envelope.
MAX_TRACE_BYTES = 5 * 1024 * 1024
DEFAULT_VALUE_BYTES = 4096

# Powertools leaves Router.__init__ unannotated.
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]


class TraceTooLarge(AetherisError):
    """The job's trace is larger than one HTTP answer may be."""

    def __init__(self, job_id: str, size: int, limit: int) -> None:
        self.job_id, self.size, self.limit = job_id, size, limit
        super().__init__(
            f"the trace of job {job_id} is {size} bytes, over the {limit} bytes one answer may carry; "
            f"ask again with a smaller max_value_bytes or an operation= filter, or page through "
            f"GET /jobs/{job_id}/events"
        )


@router.get(
    "/jobs/<job_id>/trace",
    summary="A job's trace: operations, attempts, workers, timings, effects, signals, timers",
    description=(
        "Built from the log and the effect ledger. Every claim of a log slot is an attempt row, a "
        "crashed one included (`outcome: crashed`, `ended_because`). Values (results, payloads, tool "
        "inputs) are redacted by key name and, past `max_value_bytes` as JSON, replaced by "
        "`{truncated, bytes, preview}`. `causes` is the causal tree."
    ),
    responses=answers(Trace, 400, 404),
)
def get_trace(
    job_id: JobId,
    max_value_bytes: Annotated[
        int, Query(ge=0, le=256 * 1024, description="longer values are replaced by a preview")
    ] = DEFAULT_VALUE_BYTES,
    operation: Annotated[
        str | None,
        Query(max_length=200, description="only this operation: its index, name or step id"),
    ] = None,
    effect: Annotated[
        str | None,
        Query(max_length=400, description="only operations with this effect: its name or idempotency key"),
    ] = None,
) -> Trace:
    runtime = hosting.runtime()
    job = runtime.services.jobs.get(job_id)
    if job is None or not owns(job, tenant_of_request(router.current_event)):
        raise JobNotFound(job_id)
    trace = load_trace(runtime, job_id, max_value_bytes=max_value_bytes, operation=operation, effect=effect)
    if trace is None:
        raise JobNotFound(job_id)
    size = len(trace.model_dump_json().encode())
    if size > MAX_TRACE_BYTES:
        raise TraceTooLarge(job_id, size, MAX_TRACE_BYTES)
    return trace
