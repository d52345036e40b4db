"""One invocation: replay the job function against its log, run the one operation with no outcome,
commit that outcome into the claimed slot, and unwind.

The job function is re-run from the top. Operations with a recorded outcome return it (a step's
body is never called on replay); the first one without runs live and ends the invocation with
``Suspend``. If the function returns, the live operation is the job's end (``JobCompleted``); if it
raises, ``JobFailed`` — and a divergence from the log fails the job even if the code swallowed it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from aetheris import _serde
from aetheris._clock import Clock, IdSource
from aetheris._engine import guard
from aetheris._engine.history import History, OpRecord, next_tick_delay
from aetheris._engine.job_context import JobContext
from aetheris._engine.lease import LeaseKeeper
from aetheris._engine.replay import Replay
from aetheris._engine.saga import Compensation, compensate_then_end
from aetheris._engine.services import Services
from aetheris._engine.steps import run_step
from aetheris._engine.store_io import StoreFailure, runtime_io
from aetheris._store import schema, watch
from aetheris._store.jobs import COMMITTED, JobSnapshot, status_attributes
from aetheris._store.log import SlotLease
from aetheris._store.payloads import Payloads
from aetheris._store.retention import expires_at
from aetheris.app import JobDefinition
from aetheris.errors import ErrorInfo, NondeterminismError, PayloadCorrupted, Suspend
from aetheris.events import SCHEMA_VERSION, Event, EventType, JobStatus, OpKind
from aetheris.policy import RetryPolicy

_STATUS_AFTER = {
    EventType.STEP_COMMITTED: JobStatus.RUNNING,
    EventType.STEP_FAILED: JobStatus.RUNNING,
    EventType.WAIT_STARTED: JobStatus.WAITING,
    EventType.SIGNAL_CONSUMED: JobStatus.RUNNING,
    EventType.WAIT_TIMED_OUT: JobStatus.RUNNING,
    EventType.TIMER_STARTED: JobStatus.SLEEPING,
    EventType.TIMER_FIRED: JobStatus.RUNNING,
    EventType.JOB_COMPLETED: JobStatus.COMPLETED,
    EventType.JOB_FAILED: JobStatus.FAILED,
    EventType.JOB_CANCELLED: JobStatus.CANCELLED,
    EventType.COMPENSATION_COMMITTED: JobStatus.COMPENSATING,
}


class _Stop(BaseException):
    """Unwinds the job function at its next live operation when the job must stop there."""


class _Cancel(Exception):
    pass


_CANCEL = _Cancel("cancelled")
# Job-item attributes that describe a parked job; removed when it moves on.
_PARKED_ATTRIBUTES = ("waiting_for", schema.DUE_INDEX_PK, schema.DUE_INDEX_SK)


class Invocation:
    def __init__(
        self,
        services: Services,
        definition: JobDefinition,
        snapshot: JobSnapshot,
        lease: SlotLease,
        time_budget: timedelta | None = None,
        strict_effects: bool = False,
    ) -> None:
        self.app_strict = strict_effects
        self.services = services
        self.definition = definition
        self.snapshot = snapshot
        self.lease = lease
        self.job_id = lease.job_id
        self.history = History([Event.from_item(item) for item in snapshot.events])
        self.replay = Replay(self.job_id, self.history)
        self.keeper = LeaseKeeper(
            services.log, lease, services.clock, services.settings.lease, services.settings.lease_margin
        )
        self.attempt = 1
        self.committed: Event | None = None
        self.reschedule: timedelta | None = None  # the tick came early: try again after this
        self.idle = False  # nothing to do yet (a parked job woken early): release, send nothing
        self.wake_now = False  # a signal arrived while parking: tick again at once
        self.compensations: list[Compensation] = []  # undo functions of committed steps, in order
        self.stop: BaseException | None = None  # cancellation or crash loop: end at the next operation
        self.expires_at: int | None = None  # set when this invocation ended the job (its items' TTL)
        self.time_budget = time_budget or services.settings.step_timeout

    @property
    def clock(self) -> Clock:
        return self.services.clock

    @property
    def ids(self) -> IdSource:
        return self.services.ids

    @property
    def payloads(self) -> Payloads:
        return self.services.payloads

    @property
    def next_delay(self) -> timedelta | None:
        if self.wake_now:
            return timedelta(0)
        return None if self.committed is None else next_tick_delay(self.committed, self.clock.now())

    def run(self) -> None:
        try:
            self._run()
        except StoreFailure as failure:
            raise failure.error from None  # not the job's error: the tick is retried

    def _run(self) -> None:
        if self.snapshot.job.get("cancel_requested_at") and self.stop is None:
            # Cancellation takes effect at the job's next operation, whatever it would have been.
            self.stop = _CANCEL
        ctx = JobContext(self)
        try:
            try:
                with runtime_io():
                    input_json = self.services.payloads.text(self.snapshot.job["input"]) or "null"
                job_input = self.definition.input.validate_json(input_json)
                with guard.orchestrating(self.job_id):
                    output = self.definition.fn(ctx, job_input)
            except _Stop:
                self._stopped()
                return
            except Exception as error:  # noqa: BLE001 - the job function's unhandled error is its outcome
                self._fail(self.replay.diverged or error)
                return
            if self.replay.diverged is not None:
                self._fail(self.replay.diverged)
            else:
                self._end(output=output)
        except Suspend:
            return

    def run_step(
        self,
        op: OpRecord,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
        timeout: timedelta | None,
    ) -> Any:
        return run_step(self, op, fn, args, kwargs, retry, timeout)

    @property
    def definition_strict(self) -> bool:
        return self.app_strict

    def check_stop(self) -> None:
        """Called before any live operation: a cancelled (or crash-looping) job goes no further."""
        if self.stop is not None:
            raise _Stop

    def step_time_limit(self, timeout: timedelta | None) -> timedelta:
        return min(timeout or self.services.settings.step_timeout, self.time_budget)

    def _stopped(self) -> None:
        if self.stop is _CANCEL:
            compensate_then_end(self, EventType.JOB_CANCELLED, None)
        else:
            self._fail(self.stop)

    def _fail(self, error: BaseException | None) -> None:
        if self.compensations and not isinstance(error, NondeterminismError):
            compensate_then_end(self, EventType.JOB_FAILED, error)
        else:
            self._end(error=error)

    def _end(self, output: Any = None, error: BaseException | None = None) -> None:
        if error is None:
            self.check_stop()
        try:
            op = self.replay.begin(OpKind.END, "end")
        except NondeterminismError as diverged:
            op = OpRecord(self.replay.position, OpKind.END, "end")
            # A recorded value that cannot be read back ends the job where replay stopped: that
            # error, not the divergence it causes, is what the operator must see.
            error = error if isinstance(error, PayloadCorrupted) else diverged
        if error is None:
            try:
                text = _serde.dump(output, self.definition.output, "job result", self.payloads.limit)
            except Exception as invalid:  # noqa: BLE001 - an output that does not fit its type fails the job
                error = invalid
            else:
                with runtime_io():  # a big result goes to S3 before the commit references it
                    text = self.payloads.offload(self.job_id, text)
                self.commit(EventType.JOB_COMPLETED, op, result=text)
                return
        self.commit(EventType.JOB_FAILED, op, error=ErrorInfo.of(error))

    # -- commit -------------------------------------------------------------------------------

    def commit(
        self,
        event_type: EventType,
        op: OpRecord | None,
        *,
        started: datetime | None = None,
        result: str | None = None,
        error: ErrorInfo | None = None,
        next_attempt_at: datetime | None = None,
        detail: dict[str, Any] | None = None,
        parked: dict[str, Any] | None = None,
    ) -> None:
        """Commit ``event_type`` as this invocation's one outcome into the claimed slot.

        ``parked`` (``waiting_for``, ``due``) describes a job that parks: it goes on the job item,
        ``due`` into the sparse by-due index the sweeper reads.
        """
        now = self.clock.now()
        settings = self.services.settings
        first_of_op = op is not None and not op.events
        event: dict[str, Any] = {
            "job_id": self.job_id,
            "seq": self.lease.seq,
            "type": event_type.value,
            "at": now.isoformat(),
            "attempt": self.attempt,
            "op": op.index if op else None,
            "op_kind": op.kind.value if op else None,
            "name": op.name if op else None,
            "step_id": op.step_id if op and op.kind is OpKind.STEP else None,
            "started_at": started.isoformat() if started else None,
            "ended_at": now.isoformat() if started else None,
            "duration_ms": int((now - started).total_seconds() * 1000) if started else None,
            "result": result,
            "error": error.model_dump_json() if error else None,
            "values": json.dumps(self.replay.pending_values)
            if first_of_op and self.replay.pending_values
            else None,
            "next_attempt_at": next_attempt_at.isoformat() if next_attempt_at else None,
            "reclaimed_from": self.lease.reclaimed_from,
            "detail": json.dumps(detail) if detail else None,
            "schema_version": SCHEMA_VERSION,
        }
        status = _STATUS_AFTER[event_type]
        if op is not None and op.kind is OpKind.COMPENSATE:
            status = JobStatus.COMPENSATING
        job_update: dict[str, Any] | None = None
        job_remove: tuple[str, ...] = ()
        if status is not self.snapshot.status or parked:
            job_update = {
                **status_attributes(self.job_id, status, now),
                "result": result if event_type is EventType.JOB_COMPLETED else None,
                "error": error.model_dump_json() if event_type is EventType.JOB_FAILED and error else None,
                "last_seq": self.lease.seq,
            }
            if parked:
                job_update["waiting_for"] = parked.get("waiting_for")
            # When the sweeper looks at the job next (progress deadline, timer, retention pass).
            job_update |= watch.attention(
                self.job_id,
                status,
                now,
                settings.stall_after,
                settings.sweep_shards,
                parked_due=(parked or {}).get("due"),
                next_tick_at=next_attempt_at,
            )
            if status.is_terminal:
                # The job and its outcome expire together; the marker asks for the rest of its
                # items (see _store/retention.py), repaired by the sweeper if that pass fails.
                ttl = expires_at(now, self.services.settings.retention)
                event[schema.TTL_ATTRIBUTE] = ttl
                job_update[schema.TTL_ATTRIBUTE] = ttl
            job_remove = tuple(a for a in _PARKED_ATTRIBUTES if job_update.get(a) is None)
        self.services.faults.reach("before_commit")
        with runtime_io():
            self.services.log.commit(self.lease, event, job_update, job_remove)
        self.services.faults.reach("after_commit")
        if job_update is None:  # the status stays: refresh the progress deadline only if it is stale
            fresh = watch.refresh_if_stale(
                self.snapshot.job, now, settings.stall_after, settings.sweep_shards, next_attempt_at
            )
            if fresh is not None:
                with runtime_io():
                    watch.refresh(self.services.jobs.table, self.job_id, fresh)
        stored = {k: v for k, v in event.items() if v is not None}
        stored |= {"state": COMMITTED, "fence": self.lease.fence, "worker_id": self.lease.worker_id}
        self.services.jobs.note_commit(self.job_id, stored)
        if status.is_terminal:
            self.expires_at = event[schema.TTL_ATTRIBUTE]
        self.committed = Event.from_item(
            {k: v for k, v in event.items() if v is not None}
            | {"fence": self.lease.fence, "worker_id": self.lease.worker_id}
        )
