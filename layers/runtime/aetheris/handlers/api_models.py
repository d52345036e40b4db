"""Request and response models of the HTTP API, and how a job's progress is read from its log.

These pydantic models are the API's contract: Powertools validates request bodies against them and
generates ``/openapi.json`` from them. Responses carry only what a client needs — never the store's
keys (``pk``, ``gsi1sk``) or the job's fencing state. ``JobDetail.build`` derives the progress fields
(current step, attempt, last seq, the signal waited for) from the committed log, which the job item
only projects when the status changes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aetheris.errors import ErrorInfo
from aetheris.events import Event, EventType, JobStatus, OpKind
from aetheris.runtime import JobView


class StartJobRequest(BaseModel):
    """Body of ``POST /jobs``. Unknown fields are refused, so a misspelt key is not silently dropped."""

    model_config = ConfigDict(extra="forbid")

    job_type: str = Field(min_length=1, max_length=256, description="a job type registered in the App")
    input: Any = Field(default=None, description="the job's input, validated against the job function")
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="starting again with the same key returns the same job instead of a new one",
    )


class JobStarted(BaseModel):
    job_id: str
    status: JobStatus


class JobSummary(BaseModel):
    """One job in a listing: its identity and status, without its payloads."""

    job_id: str
    job_type: str
    version: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> JobSummary:
        return cls.model_validate({name: item.get(name) for name in cls.model_fields})


class JobDetail(JobSummary):
    """A job and where it is: the job item's status and outcome plus progress read from the log."""

    idempotency_key: str | None = None
    result: Any = None
    error: ErrorInfo | None = None
    current_step: str | None = Field(default=None, description="name of the step of the latest step event")
    attempt: int = Field(default=0, description="attempt number recorded by the latest step event")
    last_seq: int = Field(default=0, description="sequence number of the latest committed event")
    waiting_for: str | None = Field(default=None, description="the signal the job is parked on, if any")

    @classmethod
    def build(cls, view: JobView, events: list[Event]) -> JobDetail:
        last_step = next((e for e in reversed(events) if e.op_kind is OpKind.STEP), None)
        last = events[-1] if events else None
        return cls(
            job_id=view.job_id,
            job_type=view.job_type,
            version=view.version,
            status=view.status,
            created_at=view.created_at,
            updated_at=view.updated_at,
            idempotency_key=view.idempotency_key,
            result=view.result,
            error=view.error,
            current_step=last_step.name if last_step else None,
            attempt=last_step.attempt if last_step else 0,
            last_seq=last.seq if last else 0,
            waiting_for=last.name if last and last.type is EventType.WAIT_STARTED else None,
        )


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class EventPage(BaseModel):
    """A page of the raw log, in sequence order (``result`` is the recorded JSON text)."""

    events: list[Event]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: e.g. job_not_found, validation_error")
    message: str = Field(description="for humans: what was wrong and what to do")


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail
