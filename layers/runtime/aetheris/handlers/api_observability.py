"""HTTP API routes ``GET /observability/summary`` and ``GET /observability/stuck``: what an SRE looks
at first — how many jobs are where, how deep the queues and dead-letter queues are, and which jobs
are not moving and why (with the evidence).

Both are bounded reads whatever the number of jobs kept (``aetheris/_operator_views.py`` states the
requests per call); stuck jobs are found by the sweeper's own diagnosis (``aetheris/_diagnosis.py``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Query
from aws_lambda_powertools.event_handler.router import APIGatewayHttpRouter
from pydantic import BaseModel, Field

from aetheris import _operator_views, hosting
from aetheris._diagnosis import Reason
from aetheris._tenancy import DEFAULT_TENANT
from aetheris.events import JobStatus
from aetheris.handlers.api_models import answers
from aetheris.handlers.api_tenancy import tenant_of_request

# Powertools leaves Router.__init__ unannotated.
router = APIGatewayHttpRouter()  # type: ignore[no-untyped-call]

MAX_THRESHOLD_SECONDS = 30 * 24 * 3600


class QueueDepth(BaseModel):
    visible: int = Field(description="ApproximateNumberOfMessages: waiting to be received")
    in_flight: int = Field(description="ApproximateNumberOfMessagesNotVisible: received, not yet deleted")
    delayed: int = Field(description="ApproximateNumberOfMessagesDelayed: sent with a delay still running")


class Summary(BaseModel):
    """Counts, ages and depths; bounded reads (see ``capped``)."""

    generated_at: datetime
    jobs: dict[JobStatus, int] = Field(description="live jobs by status")
    finished_last_hour: dict[JobStatus, int] = Field(
        description="jobs that ended in the last hour, by status"
    )
    oldest_age_seconds: dict[JobStatus, float | None] = Field(
        description="seconds since the job longest in its status got there; null: no such job"
    )
    queues: dict[str, QueueDepth] = Field(description="step, step_dlq, signal, signal_dlq")
    stuck: int = Field(description="jobs GET /observability/stuck lists (default threshold)")
    capped: list[JobStatus] = Field(
        default_factory=list, description="statuses whose count stopped at the read limit: a lower bound"
    )


class StuckEvidence(BaseModel):
    last_seq: int | None = Field(default=None, description="seq of the last committed event")
    last_event: str | None = None
    last_commit_at: datetime | None = None
    last_claim_at: datetime | None = Field(
        default=None, description="when a worker last claimed the next slot"
    )
    worker_id: str | None = Field(
        default=None, description="the claimer of the next slot, else the last committer"
    )
    attempt: int | None = None
    fence: int | None = None
    lease_until: datetime | None = None
    abandoned_claims: int | None = Field(
        default=None, description="claims of the next slot neither committed nor given back (dead workers)"
    )
    waiting_for: str | None = None
    rescue_ticks: int | None = Field(default=None, description="ticks the sweeper sent in this episode")
    last_rescue_at: datetime | None = None
    dead_letters: list[dict[str, Any]] = Field(
        default_factory=list, description="messages for the job in a dead-letter queue (peeked, not consumed)"
    )


class StuckJob(BaseModel):
    job_id: str
    job_type: str | None
    status: JobStatus | None
    reason: Reason
    since: datetime = Field(description="when it started waiting for what did not come")
    evidence: StuckEvidence


class StuckReport(BaseModel):
    threshold_seconds: float
    jobs: list[StuckJob]


@router.get(
    "/observability/summary",
    summary="Jobs by status, queue and dead-letter depths, oldest ages, stuck count",
    responses=answers(Summary, 400),
)
def get_summary() -> Summary:
    runtime = hosting.runtime()
    services = runtime.services
    scope = _scope(router.current_event)
    return Summary.model_validate(_operator_views.summary(services, services.queue.client, tenant=scope))


@router.get(
    "/observability/stuck",
    summary="Jobs that are not moving: lease expired, no commit, tick lost, dead-lettered",
    description="A job parked on a signal is not stuck (unless its signal is in the signal DLQ).",
    responses=answers(StuckReport, 400),
)
def get_stuck(
    threshold_seconds: Annotated[
        float | None,
        Query(
            ge=0, le=MAX_THRESHOLD_SECONDS, description="stuck for at least this long (default: stall_after)"
        ),
    ] = None,
) -> StuckReport:
    services = hosting.runtime().services
    threshold = (
        services.settings.stall_after if threshold_seconds is None else timedelta(seconds=threshold_seconds)
    )
    jobs = _operator_views.stuck_jobs(
        services, services.queue.client, threshold, tenant=_scope(router.current_event)
    )
    return StuckReport(
        threshold_seconds=threshold.total_seconds(),
        jobs=[
            StuckJob(
                job_id=job.job_id,
                job_type=job.job_type,
                status=job.status,
                reason=job.reason,
                since=job.since,
                evidence=StuckEvidence.model_validate(job.evidence),
            )
            for job in jobs
        ],
    )


def _scope(event: Any) -> str | None:
    """The tenant whose jobs the caller may see here: ``None`` (all, with the queues) for the default
    tenant — a single-tenant deployment, or its operators — else the caller's own tenant's only."""
    tenant = tenant_of_request(event)
    return None if tenant == DEFAULT_TENANT else tenant
