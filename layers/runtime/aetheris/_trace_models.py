"""The ``Trace`` read model (see ``aetheris.trace``, which builds it and is its public home)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aetheris.errors import ErrorInfo
from aetheris.events import EffectState, JobStatus, OpKind
from aetheris.policy import EffectSemantics

OpState = Literal[
    "running",  # known only from its ledger entries: an attempt under way (or dead), no outcome yet
    "retrying",  # its last attempt failed and scheduled another
    "committed",
    "failed",
    "waiting",
    "signalled",
    "timed_out",
    "sleeping",
    "fired",
    "completed",
    "cancelled",
]


class TraceError(BaseModel):
    type: str = Field(description="the exception's class, module-qualified")
    message: str
    retryable: bool

    @classmethod
    def of(cls, info: ErrorInfo | None) -> TraceError | None:
        return None if info is None else cls(type=info.type, message=info.message, retryable=info.retryable)


class Attempt(BaseModel):
    """One run of a step's body that reached the log (committed or failed)."""

    attempt: int
    seq: int = Field(description="the log slot its outcome was committed into")
    worker_id: str
    fence: int = Field(description="claims of that slot, this one included: above 1, a worker died or let go")
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: int | None
    outcome: Literal["committed", "failed"]
    error: TraceError | None = None
    next_attempt_at: datetime | None = Field(default=None, description="set when a retry was scheduled")
    reclaimed_from: str | None = Field(default=None, description="the worker that held the slot before")
    warnings: list[str] = Field(default=[], description="effects that bypassed sctx.tool")


class Effect(BaseModel):
    """One ledger entry of a step: a tool call, or a value recorded by ``sctx.now/uuid/random``."""

    kind: Literal["tool", "value"]
    name: str
    call: int = Field(description="0 for the step's first call of this name, 1 for the next, ...")
    idempotency_key: str | None
    semantics: EffectSemantics | None
    state: EffectState = Field(
        description="CLAIMED: called (or about to be), outcome not recorded; UNKNOWN: an AT_MOST_ONCE "
        "call whose worker was superseded before it recorded (it may or may not have happened)"
    )
    claims: int = Field(description="times the key was claimed: above 1, the call was made again")
    worker_id: str | None
    claimed_at: datetime | None
    recorded_at: datetime | None
    result: Any = None
    error: TraceError | None = None


class SignalUse(BaseModel):
    name: str
    signal_id: str
    payload: Any
    arrived_at: datetime | None = Field(description="when it reached the inbox")
    consumed_at: datetime


class Wait(BaseModel):
    signal: str
    deadline: datetime | None
    parked_at: datetime | None = Field(description="null when the signal was there before the wait")
    timed_out_at: datetime | None = None


class Timer(BaseModel):
    fire_at: datetime
    started_at: datetime
    fired_at: datetime | None = None


class Operation(BaseModel):
    """One durable operation of the job function, in the order the function asked for them."""

    index: int
    kind: OpKind
    name: str
    step_id: str | None = Field(description="the key of its ledger entries (steps and compensations)")
    state: OpState
    seqs: list[int] = Field(description="its events in the log (GET /jobs/{job_id}/events)")
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: int | None
    attempts: list[Attempt] = []
    effects: list[Effect] = []
    signal: SignalUse | None = None
    wait: Wait | None = None
    timer: Timer | None = None
    compensates: int | None = Field(default=None, description="for a compensation: the step it undid")
    compensated_by: int | None = Field(default=None, description="for a step: its compensation")
    recorded_values: list[Any] = Field(default=[], description="ctx.now/uuid/random recorded just before")
    result: Any = None
    error: TraceError | None = None


class SlotClaim(BaseModel):
    """The claim on the log slot after the last event: an operation in progress, or given back."""

    seq: int
    worker_id: str
    fence: int
    claimed_at: datetime | None
    lease_until: datetime | None
    released: bool = Field(description="given back unfilled (an early or idle tick)")


class Totals(BaseModel):
    operations: int
    attempts: int = Field(description="attempts of steps and compensations that reached the log")
    failed_attempts: int
    retries: int = Field(description="failed attempts that scheduled another")
    takeovers: int = Field(description="events committed into a slot another worker had claimed first")
    effects: int = Field(description="tool calls in the ledger")
    effect_claims: int
    signals: int
    compensations: int


class Trace(BaseModel):
    job_id: str
    job_type: str
    version: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    cancel_requested_at: datetime | None
    waiting_for: str | None
    result: Any
    error: TraceError | None
    compensated: list[str] = Field(description="compensations the job's end reports as run")
    operations: list[Operation]
    open_claim: SlotClaim | None
    unmatched_effects: list[Effect] = Field(description="ledger entries whose key names no operation")
    totals: Totals
    last_seq: int
