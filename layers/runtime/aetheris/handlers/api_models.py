"""Request and response models of the HTTP API, how a job's progress is read from its log, and the
parameter types and answer documentation the route modules share.

These pydantic models are the API's contract: Powertools validates request bodies against them and
generates ``/openapi.json`` from them. Responses carry only what a client needs — never the store's
keys (``pk``, ``gsi1sk``) or the job's fencing state. ``JobDetail.build`` derives the progress fields
(current step, attempt, last seq, the signal waited for) from the committed log, which the job item
only projects when the status changes.
"""

from __future__ import annotations

import json
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any

from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from pydantic import BaseModel, ConfigDict, Field

from aetheris._store.listing import EVENT_CURSOR_PATTERN, JOB_CURSOR_PATTERN
from aetheris._tenancy import owns
from aetheris.budget import Budget
from aetheris.errors import ErrorInfo, JobNotFound
from aetheris.events import Event, EventType, ForkedFrom, JobStatus, OpKind
from aetheris.handlers.api_bounds import (
    MAX_ANSWER_BYTES,
    ValuePreview,
    answer_bytes,
    preview,
    shown,
    stored_bytes,
)
from aetheris.handlers.api_http import JOB_ID_PATTERN, SIGNAL_ID_PATTERN
from aetheris.runtime import JobView, Runtime

JobId = Annotated[
    str,
    Path(min_length=1, max_length=128, pattern=JOB_ID_PATTERN, description="the job id POST /jobs returned"),
]
# A cursor is a position (see aetheris._store.listing): every value of the pattern is one.
Cursor = Annotated[
    str | None,
    Query(pattern=JOB_CURSOR_PATTERN, description="next_cursor of the previous page: where the list resumes"),
]
EventCursor = Annotated[
    str | None,
    Query(pattern=EVENT_CURSOR_PATTERN, description="next_cursor of the previous page: the seq it ended at"),
]


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
    budget: Budget | None = Field(
        default=None, description="limits for this job, in place of its job type's Budget (aetheris.budget)"
    )


class ForkJobRequest(BaseModel):
    """Body of ``POST /jobs/{job_id}/fork``; unknown fields are refused, and so are ``true`` for 1."""

    model_config = ConfigDict(extra="forbid", strict=True)

    at_seq: int | None = Field(
        default=None,
        ge=0,
        le=10**9,
        description="copy the log up to this seq and go on from there; omitted: retry a FAILED or "
        "CANCELLED job from its failed operation",
    )
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="forking again with the same key returns the same new job instead of another",
    )
    budget: Budget | None = Field(default=None, description="limits for the new job (default: the old job's)")


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
    input: Any = Field(default=None, description="the job's input, as recorded at start")
    result: Any = None
    error: ErrorInfo | None = None
    current_step: str | None = Field(default=None, description="name of the step of the latest step event")
    attempt: int = Field(default=0, description="attempt number recorded by the latest step event")
    last_seq: int = Field(default=0, description="sequence number of the latest committed event")
    waiting_for: str | None = Field(default=None, description="the signal the job is parked on, if any")
    cancel_requested_at: datetime | None = Field(
        default=None, description="when a cancel was asked for; the job stops at its next operation"
    )
    parent_id: str | None = Field(default=None, description="for a child job: the job that started it")
    children: list[str] = Field(default_factory=list, description="the child jobs it started (ctx.child)")
    forked_from: ForkedFrom | None = Field(
        default=None, description="the job and seq this one was forked (or retried) from"
    )
    budget: Budget | None = Field(default=None, description="the budget this job was started with, if any")
    run: int = Field(
        default=1,
        description="the job's run: 1, then one more at each ctx.continue_as_new (the log "
        "and trace shown are the current run's)",
    )
    truncated: list[str] = Field(
        default_factory=list,
        description="the fields (input, result) too big for this answer: each is a ValuePreview "
        "{truncated, bytes, preview, href}; GET its href for the whole value",
    )

    @classmethod
    def read(cls, runtime: Runtime, job_id: str, tenant: str | None = None) -> JobDetail:
        """The job as one consistent read of its item and log shows it; ``JobNotFound`` if none (or,
        with a ``tenant``, if it is another tenant's).

        The answer stays under ``MAX_ANSWER_BYTES``: a value over ``SHOWN_VALUE_BYTES``, or the
        bigger ones while the answer would still pass the budget, are shown as previews.
        """
        snapshot = runtime.services.jobs.load(job_id)
        if snapshot is None or not owns(snapshot.job, tenant):
            raise JobNotFound(job_id)
        payloads = runtime.services.payloads
        job = snapshot.job
        stored = {"input": runtime.services.jobs.input_of(job), "result": job.get("result")}
        texts = {name: shown(payloads, value, f"/jobs/{job_id}/{name}") for name, value in stored.items()}
        plain = {name: text if isinstance(text, str) else None for name, text in texts.items()}
        # The progress fields need no recorded values: the log's are never fetched here.
        detail = cls.build(
            JobView.from_item({**job, **plain}), [Event.from_item(item) for item in snapshot.events]
        )
        values = {name: _parsed(text) for name, text in texts.items()}
        detail = detail.model_copy(update={**values, "truncated": [n for n, t in texts.items() if _cut(t)]})
        for name in sorted(stored, key=lambda n: stored_bytes(stored[n]), reverse=True):
            if answer_bytes(detail.model_dump(mode="json")) <= MAX_ANSWER_BYTES:
                break
            if name not in detail.truncated and stored[name] is not None:
                cut = preview(payloads, str(stored[name]), f"/jobs/{job_id}/{name}")
                update = {name: cut.model_dump(), "truncated": [*detail.truncated, name]}
                detail = detail.model_copy(update=update)
        return detail

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
            waiting_for=_waiting_for(last, view),
            cancel_requested_at=view.cancel_requested_at,
            forked_from=view.forked_from,
            budget=view.budget,
            run=view.run,
            parent_id=view.parent_id,
            children=[str(e.detail["child_id"]) for e in events if e.type is EventType.CHILD_STARTED],
        )


def _waiting_for(last: Event | None, view: JobView) -> str | None:
    """What a parked job waits for: a wait's signal (or a step's blocked on its budget), a fan-out's
    branches, a child job."""
    if last is not None and last.type in (EventType.FAN_OUT_STARTED, EventType.CHILD_STARTED):
        return view.waiting_for
    if last is None or last.type is not EventType.WAIT_STARTED:
        return None
    return str(last.detail.get("signal") or last.name)


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class EventView(Event):
    """An event as the API shows it: ``result`` is the recorded JSON text, or a preview if too big."""

    # Pydantic re-declares the field; widening it for previews is the point of this view.
    result: str | ValuePreview | None = None  # type: ignore[assignment]
    input: str | ValuePreview | None = None  # type: ignore[assignment]

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> EventView:
        view = super().from_item(item)  # built as cls: an EventView
        assert isinstance(view, EventView)
        return view


class EventPage(BaseModel):
    """A page of the raw log, in sequence order (``result`` is the recorded JSON text)."""

    events: list[EventView]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null on the last page")


class SignalRequest(BaseModel):
    """Body of ``POST /jobs/{job_id}/signals/{name}``; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")

    payload: Any = Field(default=None, description="what ctx.wait_for_signal returns to the job")
    signal_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        pattern=SIGNAL_ID_PATTERN,
        description="deduplicates: the same id sent again is accepted again and consumed once",
    )


class SignalAccepted(BaseModel):
    signal_id: str = Field(description="the id the signal is deduplicated by: the client's, or a new one")


class ErrorDetail(BaseModel):
    code: str = Field(description="stable, machine-readable: e.g. job_not_found, validation_error")
    message: str = Field(description="for humans: what was wrong and what to do")


class ErrorResponse(BaseModel):
    """The body of every 4xx and 5xx answer."""

    error: ErrorDetail


def _parsed(text: str | ValuePreview | None) -> Any:
    if isinstance(text, ValuePreview):
        return text.model_dump()
    return None if text is None else json.loads(text)


def _cut(text: str | ValuePreview | None) -> bool:
    return isinstance(text, ValuePreview)


def answers(ok: type[BaseModel], *errors: int, status: int = HTTPStatus.OK) -> dict[int, Any]:
    """OpenAPI ``responses`` of a route: ``status`` with ``ok`` and the error answers it can give."""
    described: dict[int, Any] = {
        status: {"description": HTTPStatus(status).phrase, "content": {"application/json": {"model": ok}}}
    }
    schema = {"application/json": {"model": ErrorResponse}}
    described.update({code: {"description": HTTPStatus(code).phrase, "content": schema} for code in errors})
    return described
