"""HTTP API route ``GET /jobs/{job_id}/trace``: a job's operations with their attempts, effects,
signals, waits, timers and compensations, as ``aetheris.trace.build_trace`` reads them from the log
and the effect ledger.

Two reads: one consistent Query for the job item, its log and the open slot claim, then the
ledger. An effect claimed after the first read shows up on an operation with no outcome yet
(``running``), which is what it is. Recorded values are cut to a preview past ``max_value_bytes``,
and a trace that would not fit in a Lambda answer is refused with a pointer to the paginated log.
"""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from aetheris import hosting
from aetheris._tenancy import owns
from aetheris.errors import AetherisError, JobNotFound
from aetheris.events import Event
from aetheris.handlers.api_models import JobId, answers
from aetheris.handlers.api_tenancy import tenant_of_request
from aetheris.runtime import JobView
from aetheris.trace import Trace, build_trace

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
            f"ask again with a smaller max_value_bytes, or page through GET /jobs/{job_id}/events"
        )


@router.get(
    "/jobs/<job_id>/trace",
    summary="A job's trace: operations, attempts, workers, timings, effects, signals, timers",
    description=(
        "Built from the log and the effect ledger. Values (results, payloads) longer than "
        "`max_value_bytes` as JSON are replaced by `{truncated, bytes, preview}`."
    ),
    responses=answers(Trace, 400, 404),
)
def get_trace(
    job_id: JobId,
    max_value_bytes: Annotated[
        int, Query(ge=0, le=256 * 1024, description="longer values are replaced by a preview")
    ] = DEFAULT_VALUE_BYTES,
) -> Trace:
    runtime = hosting.runtime()
    snapshot = runtime.services.jobs.load(job_id)
    if snapshot is None or not owns(snapshot.job, tenant_of_request(router.current_event)):
        raise JobNotFound(job_id)
    resolve = runtime.services.payloads.resolve
    trace = build_trace(
        JobView.from_item(resolve(snapshot.job)),
        [Event.from_item(resolve(item)) for item in snapshot.events],
        runtime.effects(job_id),
        claim=snapshot.claim,
        max_value_bytes=max_value_bytes,
    )
    size = len(trace.model_dump_json().encode())
    if size > MAX_TRACE_BYTES:
        raise TraceTooLarge(job_id, size, MAX_TRACE_BYTES)
    return trace
