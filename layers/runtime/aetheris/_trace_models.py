"""The ``Trace`` read model (see ``aetheris.trace``, which builds it and is its public home)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from aetheris.errors import ErrorInfo
from aetheris.events import EffectState, ForkedFrom, JobStatus, OpKind
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
    "aborted",
    "fanned_out",  # a fan-out whose branches run (each branch is an operation row of its own)
    "joined",  # a fan-out whose batch was recorded
    "child_running",  # a child job (``child_id``) runs; the job waits for it
]


class TraceError(BaseModel):
    type: str = Field(description="the exception's class, module-qualified")
    message: str
    retryable: bool

    @classmethod
    def of(cls, info: ErrorInfo | None) -> TraceError | None:
        return None if info is None else cls(type=info.type, message=info.message, retryable=info.retryable)


class Attempt(BaseModel):
    """One claim of a log slot that ran (or was running) an operation: one row of the timeline.

    ``committed`` / ``failed``: its outcome is in the log. ``crashed``: its worker claimed the slot
    and vanished (or was paused past its lease) without committing; the worker that took the slot
    over says who it was (``reclaimed_from``), its fence is the one before the takeover's. ``running``:
    the open claim on the slot after the last event, with no outcome yet.
    """

    attempt: int = Field(description="the retry policy's attempt number (a crash does not use one up)")
    seq: int = Field(description="the log slot it claimed (and committed into, unless it crashed)")
    worker_id: str
    fence: int = Field(description="claims of that slot, this one included: above 1, a worker died or let go")
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: int | None
    outcome: Literal["committed", "failed", "crashed", "running"]
    ended_because: str = Field(default="", description="why it ended, in words (for people)")
    claimed_at: datetime | None = Field(default=None, description="when its worker claimed the slot")
    lease_until: datetime | None = Field(default=None, description="a crashed or running claim's lease end")
    taken_over_by: str | None = Field(default=None, description="crashed: the worker that took the slot")
    taken_over_at: datetime | None = None
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
    input: Any = Field(
        default=None, description="the tool's arguments {args, kwargs} as claimed: redacted, bounded"
    )
    result: Any = None
    error: TraceError | None = None
    claim_seq: int | None = Field(default=None, description="slot of the attempt holding the claim")
    claim_fence: int | None = Field(default=None, description="fence of the attempt holding the claim")
    claimed_by: str | None = Field(default=None, description="UNKNOWN: the superseded claimer")


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
    unseen_claims: int = Field(
        default=0,
        description="claims of its slots that neither committed nor were given back, besides "
        "the crashed attempts shown (their workers are not recorded)",
    )
    fan_out: int | None = Field(default=None, description="for a branch: the index of its fan-out")
    branch: int | None = Field(default=None, description="for a branch: its position in the fan-out")
    child_id: str | None = Field(default=None, description="for a child job operation: the child's id")


class SlotClaim(BaseModel):
    """The claim on the log slot after the last event: an operation in progress, or given back."""

    seq: int
    worker_id: str
    fence: int
    claimed_at: datetime | None
    lease_until: datetime | None
    released: bool = Field(description="given back unfilled (an early or idle tick)")
    expired: bool | None = Field(
        default=None,
        description="its lease ran out without a commit: the worker died or hangs (null: unknown)",
    )


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


class CauseLink(BaseModel):
    rel: Literal["released", "undoes", "took_over", "retries"] = Field(
        description="released: the signal ended this wait; undoes: this compensation reverses that "
        "step; took_over: this attempt took the slot of that crashed one; retries: it follows that "
        "failed attempt"
    )
    to: str = Field(description="the id of the node it points at")


class CauseNode(BaseModel):
    """One node of the causal tree: job → operation → attempt → effect, signal → its wait."""

    id: str
    parent: str | None
    kind: Literal["job", "operation", "attempt", "effect", "signal"]
    label: str
    state: str
    at: datetime | None
    links: list[CauseLink] = []


class Trace(BaseModel):
    job_id: str
    job_type: str
    version: str
    status: JobStatus
    created_at: datetime
    updated_at: datetime
    cancel_requested_at: datetime | None
    waiting_for: str | None
    forked_from: ForkedFrom | None = Field(default=None, description="set on a job made by fork or retry")
    run: int = Field(default=1, description="the job's run (ctx.continue_as_new): the trace is this run's")
    result: Any
    error: TraceError | None
    parent_id: str | None = Field(default=None, description="for a child job: the job that started it")
    compensated: list[str] = Field(description="compensations the job's end reports as run")
    operations: list[Operation]
    open_claim: SlotClaim | None
    unmatched_effects: list[Effect] = Field(description="ledger entries whose key names no operation")
    totals: Totals
    last_seq: int
    causes: list[CauseNode] = Field(
        default=[], description="the causal tree, depth first (a node's parent comes before it)"
    )
    filtered_by: dict[str, str] = Field(
        default={}, description="the filters applied (operation, effect); totals are the whole job's"
    )
