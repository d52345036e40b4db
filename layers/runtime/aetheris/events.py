"""The log's vocabulary: job statuses, event types and the ``Event`` read model.

Every event carries ``job_id``, ``seq``, ``type``, ``at``, ``fence``, ``attempt`` and ``worker_id``;
step events add ``step_id`` (stable: the operation's position and name), timings and the result
or error. Events are versioned by ``schema_version``.
"""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aetheris.errors import ErrorInfo

SCHEMA_VERSION = 1


class JobStatus(enum.StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    WAITING = "WAITING"
    SLEEPING = "SLEEPING"
    COMPENSATING = "COMPENSATING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)


class EventType(enum.StrEnum):
    JOB_CREATED = "JobCreated"
    STEP_COMMITTED = "StepCommitted"
    STEP_FAILED = "StepFailed"
    RETRY_SCHEDULED = "RetryScheduled"
    WAIT_STARTED = "WaitStarted"
    SIGNAL_CONSUMED = "SignalConsumed"
    WAIT_TIMED_OUT = "WaitTimedOut"
    TIMER_STARTED = "TimerStarted"
    TIMER_FIRED = "TimerFired"
    COMPENSATION_COMMITTED = "CompensationCommitted"
    LEASE_RECLAIMED = "LeaseReclaimed"
    CANCEL_REQUESTED = "CancelRequested"  # a cancel took effect here: the operation was not run
    # The operation could not be run (its ticks kept dying or failing): the job stops here.
    OPERATION_ABORTED = "OperationAborted"
    # Fan-out (``ctx.map`` / ``ctx.parallel``): the branches were started; the join's batch.
    FAN_OUT_STARTED = "FanOutStarted"
    FAN_OUT_JOINED = "FanOutJoined"
    # A branch that was not run (or not retried): the fan-out's rule was decided, or a cancel came.
    BRANCH_CANCELLED = "BranchCancelled"
    # Child jobs (``ctx.child``): the child was started and the parent parked; the child ended.
    CHILD_STARTED = "ChildStarted"
    CHILD_ENDED = "ChildEnded"
    # ``ctx.continue_as_new(state)``: this run's log ends here; the job's next run starts from it,
    # with ``input`` = the state (see ``_engine/operations/continue_as_new.py``).
    CONTINUED_AS_NEW = "ContinuedAsNew"
    JOB_COMPLETED = "JobCompleted"
    JOB_FAILED = "JobFailed"
    JOB_CANCELLED = "JobCancelled"


class SlotState(enum.StrEnum):
    """A log slot item: claimed by a worker (its lease), then filled with the event it committed."""

    CLAIMED = "CLAIMED"
    COMMITTED = "COMMITTED"
    # A fan-out branch slot reserved by the branch that started it (``max_concurrency``): not
    # claimed by any worker yet; its first tick claims it like a free slot.
    QUEUED = "QUEUED"


class EffectState(enum.StrEnum):
    """An effect-ledger item: claimed before the call, then its outcome (see ``_store/ledger.py``)."""

    CLAIMED = "CLAIMED"  # called (or about to be); outcome not recorded
    RECORDED = "RECORDED"  # the call returned; its result is what every later attempt gets
    FAILED = "FAILED"  # the call raised; a retry may claim it again
    # An AT_MOST_ONCE claim whose claimer was superseded before it recorded: the effect may or may
    # not have happened, and no late record can change that verdict any more.
    UNKNOWN = "UNKNOWN"


class OpKind(enum.StrEnum):
    """What kind of durable operation an event is the outcome of (checked on replay)."""

    STEP = "step"
    WAIT = "wait"
    SLEEP = "sleep"
    COMPENSATE = "compensate"
    END = "end"
    FANOUT = "fanout"  # ctx.map / ctx.parallel, in the job's log
    BRANCH = "branch"  # one branch of a fan-out, in the branch's own slots
    CHILD = "child"  # ctx.child
    CONTINUE = "continue"  # ctx.continue_as_new


class ForkedFrom(BaseModel):
    """Where a forked job came from (its ``JobCreated`` says so): ``aetheris fork`` / ``retry``."""

    model_config = ConfigDict(frozen=True)

    job_id: str = Field(description="the job whose log this one's starts with")
    seq: int = Field(description="the seq asked for (fork), or of the failure retried (retry)")
    copied_through: int = Field(description="the last seq copied (a parking event is left to the fork)")
    via: Literal["fork", "retry"]


class Event(BaseModel):
    """One committed log entry, as read back from the store."""

    # "ignore" stated, not left to the default: from_item validates a slot item as stored, with its
    # pk, sk, state, claim and grant attributes beside the event's fields.
    model_config = ConfigDict(frozen=True, extra="ignore")

    job_id: str
    seq: int
    type: EventType
    at: datetime
    fence: int
    attempt: int
    worker_id: str
    schema_version: int = SCHEMA_VERSION
    op: int | None = None
    op_kind: OpKind | None = None
    name: str | None = None
    step_id: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    duration_ms: int | None = None
    result: str | None = None
    error: ErrorInfo | None = None
    # Factories, not ``= []``: pydantic deep-copies a mutable default on every validation (most of
    # what parsing a stored event cost); the schema still shows the default.
    values: list[Any] = Field(default_factory=list, json_schema_extra={"default": []})
    next_attempt_at: datetime | None = None
    reclaimed_from: str | None = None
    branch: int | None = None  # set on a fan-out branch's events (their ``op`` is the fan-out's)
    input: str | None = None  # JobCreated / ContinuedAsNew: the (run's) input as stored JSON text
    detail: dict[str, Any] = Field(default_factory=dict, json_schema_extra={"default": {}})

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Event:
        # The slot's own attributes (pk, sk, state, claim and grant ...) are ignored by validation
        # (``extra`` is "ignore"): the item is copied only when a field is stored as JSON text.
        data = item
        if isinstance(item.get("error"), str):
            data = {**data, "error": ErrorInfo.model_validate_json(item["error"])}
        for field in ("values", "detail"):
            if isinstance(item.get(field), str):
                data = {**data, field: json.loads(item[field])}
        return cls.model_validate(data)

    def result_json(self) -> Any:
        return None if self.result is None else json.loads(self.result)
