"""HTTP API routes that act on a job: send it a signal, cancel it, fork (or retry) it.

Both answer only once the runtime has accepted the request durably: a signal is on the signal
queue before the 202 (the signal-ingest Lambda puts it in the inbox and wakes the job), a cancel
is on the job item before the 200 (the job stops at its next operation, running its
compensations). Errors are raised as the runtime's exceptions and become answers in ``api``'s
exception handlers.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter

from aetheris import hosting
from aetheris._engine.step_context import check_name
from aetheris.errors import AetherisError, JobFinished
from aetheris.events import JobStatus
from aetheris.handlers.api_http import SIGNAL_NAME_PATTERN
from aetheris.handlers.api_models import (
    ForkJobRequest,
    JobDetail,
    JobId,
    JobStarted,
    SignalAccepted,
    SignalRequest,
    answers,
)
from aetheris.handlers.api_tenancy import tenant_of_request

SignalName = Annotated[
    str,
    Path(min_length=1, max_length=100, pattern=SIGNAL_NAME_PATTERN, description="the name the job waits for"),
]

# Powertools leaves Router.__init__ unannotated.
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]


class InvalidSignalName(AetherisError):
    """The signal name in the path is not one a job can wait for."""

    def __init__(self, name: str, reason: str) -> None:
        self.name, self.reason = name, reason
        super().__init__(reason)


@router.post(
    "/jobs/<job_id>/signals/<name>",
    summary="Send a signal to a job",
    description=(
        "202 once the signal is on the signal queue: it is never lost, and wakes the job if it waits for "
        "`name` (a signal sent before the wait is kept for it). Send the same `signal_id` again to retry "
        "safely: the job consumes it once, and a retry after the job finished gets the same 202. 409 for a "
        "new signal to a finished job."
    ),
    responses=answers(SignalAccepted, 400, 404, 409, 413, 415, 422, status=HTTPStatus.ACCEPTED),
)
def send_signal(
    job_id: JobId, name: SignalName, request: Annotated[SignalRequest | None, Body()] = None
) -> Response[SignalAccepted]:
    try:
        check_name("signal", name)
    except ValueError as invalid:
        raise InvalidSignalName(name, str(invalid)) from None
    body = request or SignalRequest()
    tenant = tenant_of_request(router.current_event)
    signal_id = hosting.runtime().send_signal(job_id, name, body.payload, body.signal_id, tenant=tenant)
    return Response(
        status_code=HTTPStatus.ACCEPTED,
        content_type=content_types.APPLICATION_JSON,
        body=SignalAccepted(signal_id=signal_id),
    )


@router.post(
    "/jobs/<job_id>/cancel",
    summary="Cancel a job",
    description=(
        "Asks the job to stop at its next operation (at once if it is parked), after running the "
        "compensations of its committed steps; `cancel_requested_at` records when. Idempotent: asking "
        "again, or once it is CANCELLED, answers 200 with the job as it is now; 409 if it COMPLETED or "
        "FAILED."
    ),
    responses=answers(JobDetail, 400, 404, 409),
)
def cancel_job(job_id: JobId) -> JobDetail:
    runtime = hosting.runtime()
    tenant = tenant_of_request(router.current_event)
    try:
        runtime.cancel(job_id, tenant=tenant)
    except JobFinished as finished:
        if finished.status != JobStatus.CANCELLED:
            raise
    return JobDetail.read(runtime, job_id, tenant)


_STARTED: dict[str, Any] = {"application/json": {"model": JobStarted}}


@router.post(
    "/jobs/<job_id>/fork",
    summary="Fork a job (time travel), or retry a failed one",
    description=(
        "Starts a NEW job of the same type, on the job type's latest deployed version, whose log is this "
        "job's up to `at_seq`; the operations after it run live. Effects recorded up to `at_seq` are not "
        "made again (they are answered from the copied log and ledger); later ones get the new job's own "
        "idempotency keys. Without `at_seq`: retry a FAILED or CANCELLED job from its failed operation "
        "(that operation runs again with a fresh retry policy). The new job's `forked_from` names this "
        "one. 409 `invalid_seq` for a seq past the end of the job's log (as it is now) or at its end; 409 "
        "`not_retryable` for a retry of a job that is not FAILED/CANCELLED or whose compensations ran."
    ),
    responses={
        **answers(JobStarted, 400, 404, 409, 413, 415, 422),
        200: {
            "description": "Forked before with this idempotency key: the same new job",
            "content": _STARTED,
        },
        201: {"description": "Forked: the new job", "content": _STARTED},
    },
)
def fork_job(job_id: JobId, request: Annotated[ForkJobRequest | None, Body()] = None) -> Response[JobStarted]:
    body = request or ForkJobRequest()
    runtime = hosting.runtime()
    tenant = tenant_of_request(router.current_event)
    if body.at_seq is None:
        started = runtime.retry(
            job_id, tenant=tenant, idempotency_key=body.idempotency_key, budget=body.budget
        )
    else:
        started = runtime.fork(
            job_id, body.at_seq, tenant=tenant, idempotency_key=body.idempotency_key, budget=body.budget
        )
    return Response(
        status_code=HTTPStatus.CREATED if started.created else HTTPStatus.OK,
        content_type=content_types.APPLICATION_JSON,
        body=JobStarted(job_id=started.job_id, status=started.status),
        headers={"Location": f"/jobs/{started.job_id}"},
    )
