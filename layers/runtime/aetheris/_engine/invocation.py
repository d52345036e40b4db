"""One invocation: replay the job function against its log, run the one operation with no outcome,
commit that outcome into the claimed slot, and unwind.

The job function is re-run from the top. Operations with a recorded outcome return it (a step's
body is never called on replay); the first one without runs live, commits, and raises ``Suspend``
carrying when to come back (``ComeBack``) — that exception *is* the invocation's result. If the
function returns, its end is an operation too (``JobCompleted``); if it raises, ``JobFailed``
after the compensations of its committed steps.

Control flow cannot be swallowed: once an operation has suspended (or the lease was lost, a store
call failed, replay diverged, the job stopped), every later operation of this invocation raises the
same exception again, and whatever the job function does after catching it — return, raise
something else, call more operations — changes nothing: the invocation's result stays the one it
had, and the worker logs where the job function went on, naming the ``except`` to fix.

Stopping (a cancel, or an operation that keeps killing its ticks) happens at the job's first
operation without an outcome, whatever it is: the stop is committed as that operation's outcome
(``CancelRequested`` / ``OperationAborted``), so replay reaches the same stop at the same place and
unwinds the job function with ``Abort``; then the saga runs and the job ends.

Rejected: outcome flags on the invocation read by the worker afterwards (``reschedule``, ``idle``,
``wake_now``), and a private stop exception raised where the stop was noticed — it escaped every
handler when noticed at the job's end, and replay of a stopped job diverged after recorded values.
"""

from __future__ import annotations

import secrets
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from aetheris._clock import Clock, IdSource, from_millis, to_millis
from aetheris._engine import guard
from aetheris._engine.come_back import ComeBack
from aetheris._engine.commit import build_event, job_projection, refreshed_attention
from aetheris._engine.control import Abort
from aetheris._engine.faults import SimulatedCrash
from aetheris._engine.history import History, OpRecord, ticks_at_once
from aetheris._engine.job_context import JobContext
from aetheris._engine.lease import LeaseKeeper
from aetheris._engine.operations.base import Operation
from aetheris._engine.operations.end import EndOp
from aetheris._engine.parsed_log import parse_events
from aetheris._engine.records import Recorder
from aetheris._engine.replay import Replay
from aetheris._engine.saga import Compensation, compensate_then_end
from aetheris._engine.services import Services
from aetheris._engine.sticky import Discarded, Session
from aetheris._engine.store_io import StoreFailure, runtime_io
from aetheris._store import schema, watch
from aetheris._store.branches import Branches
from aetheris._store.jobs import COMMITTED, JobSnapshot
from aetheris._store.log import JobChanged, SlotLease
from aetheris._store.payloads import Payloads
from aetheris.app import App, JobDefinition
from aetheris.budget import Budget, effective
from aetheris.errors import ErrorInfo, NondeterminismError, Suspend, WorkerCrashLoop
from aetheris.events import Event, EventType, JobStatus, OpKind


class Invocation:
    def __init__(
        self,
        services: Services,
        definition: JobDefinition,
        snapshot: JobSnapshot,
        lease: SlotLease,
        time_budget: timedelta | None = None,
        strict_effects: bool = False,
        crash_loop: WorkerCrashLoop | None = None,
        resumes: Invocation | None = None,
        events: list[Event] | None = None,
    ) -> None:
        self.services = services
        self.definition = definition
        self.snapshot = snapshot
        self.lease = lease
        self.job_id = lease.job_id
        self.strict_effects = strict_effects
        self.history: History
        self.replay: Replay
        if resumes is not None:  # a sticky job's next tick: the log it left, extended by its commit
            self.history, self.replay = resumes.history, resumes.replay
        else:
            if events is None:  # ``events``: the snapshot's, parsed already (``parsed_log.py``)
                events = parse_events(snapshot.events)
            self.history = History(events)
            self.replay = Replay(self.job_id, self.history)
        # Operations answered from the log before this tick began (a resumed function's).
        self._replayed_before = min(self.replay.position, len(self.history.ops))
        self.recorder = Recorder(self.job_id, services.payloads)
        settings = services.settings
        self.keeper = LeaseKeeper(
            services.log, lease, services.clock, settings.lease, settings.lease_margin, services.faults
        )
        self.attempt = 1
        # Undo functions of committed steps, in order (one list for all ticks of a sticky function).
        self.compensations: list[Compensation] = resumes.compensations if resumes is not None else []
        # (type's budget, stored budget, signals applied, the budget): see ``budget``.
        self._budget: tuple[Budget | None, Any, int, Budget | None] | None = (
            resumes._budget if resumes is not None else None
        )
        self.cancel_requested_at: str | None = snapshot.job.get("cancel_requested_at")
        self.crash_loop = crash_loop  # set by the worker: this slot keeps killing its ticks
        self.halted: BaseException | None = None  # the control flow that ended this invocation
        self.swallowed: str | None = None  # where the job function went on after it was halted
        self.committed: Event | None = None
        self.grant: str | None = None  # the token of the next slot's grant, if the commit made one
        self._counted = False
        self.time_budget = time_budget or services.settings.step_timeout
        # Set on a fan-out branch's invocation (``branch_invocation.py``): (fan-out position, branch).
        self.branch_target: tuple[int, int] | None = None
        self.branch_state: Branches | None = None
        self.branch_record: OpRecord | None = None
        self.app: App | None = None  # set by the worker: a child job's definition is looked up there
        # The sticky session running this invocation's job function (``sticky.py``), while it may park.
        self.session: Session | None = None

    @property
    def clock(self) -> Clock:
        clock: Clock = self.services.clock
        return clock

    @property
    def ids(self) -> IdSource:
        return self.services.ids

    @property
    def payloads(self) -> Payloads:
        return self.services.payloads

    @property
    def budget(self) -> Budget | None:
        """The job's ``Budget``: its per-start one or its type's, raised by recorded budget signals."""
        # Only consumed signals can raise it: the log's other events are not walked on every step.
        # The raises are a fold over the signals in order, kept with how many it has applied, so a
        # sticky job's tick applies only the signals consumed since (never all of them again).
        base, stored, signals = self.definition.budget, self.snapshot.job.get("budget"), self.history.signals
        memo = self._budget
        if memo is None or memo[0] is not base or memo[1] != stored or memo[2] > len(signals):
            memo = (base, stored, 0, effective(base, stored, ()))
        if memo[2] < len(signals):
            memo = (base, stored, len(signals), effective(memo[3], None, signals[memo[2] :]))
        self._budget = memo
        return memo[3]

    def step_time_limit(self, timeout: timedelta | None) -> timedelta:
        return min(timeout or self.services.settings.step_timeout, self.time_budget)

    # -- running ------------------------------------------------------------------------------

    def run(self, session: Session | None = None) -> ComeBack:
        """Advance the job by one operation; returns when its next tick is due.

        With ``session`` (on the session's thread) the function may stay parked after this tick's
        commit and go on in later invocations of the job; the one it is bound to when it ends
        concludes it."""
        try:
            return self._run(session)
        except StoreFailure as failure:
            raise failure.error from None  # not the job's error: the tick is retried

    def _run(self, session: Session | None = None) -> ComeBack:
        try:
            with runtime_io():
                start = self.history.run_start  # a continued job's run starts from its state
                stored_input = start.input if start else self.services.jobs.input_of(self.snapshot.job)
                input_json = self.payloads.text(stored_input) or "null"
            job_input = self.definition.input.validate_json(input_json)
        except StoreFailure:
            raise
        except Exception as unreadable:  # noqa: BLE001 - an input that cannot be read back fails the job
            return self._finish(self._end_failed, unreadable)
        ctx = JobContext(self)
        self.session = session
        if session is not None:
            session.ctx = ctx
        try:
            with guard.orchestrating(self.job_id):
                output = self.definition.fn(ctx, job_input)
        except BaseException as raised:  # noqa: BLE001 - sorted below: ours, or the job's own error
            went_on = None if isinstance(raised, Discarded) else f"raised {type(raised).__name__} instead"
            ended_in = _bound(self, session, went_on)
            return ended_in._finish(ended_in._unwound, raised)
        ended_in = _bound(self, session, "returned")
        return ended_in._finish(ended_in._returned, output)

    def _count_replayed(self) -> None:
        if not self._counted:
            self._counted = True  # operations answered from the log this tick, counted once
            position = self.replay.position - self.history.base  # this run's operations
            replayed = min(position, len(self.history.ops)) - self._replayed_before
            self.services.telemetry.effect_replayed(replayed)

    def _finish(self, conclude: Callable[..., NoReturn], *args: Any) -> ComeBack:
        """Run what ends the invocation: every path ends in the ``Suspend`` that carries its result."""
        self.session = None  # the end, a saga or a stop never parks: later ticks replay
        self._count_replayed()
        try:
            conclude(*args)
        except Suspend as suspended:
            if isinstance(suspended.come_back, ComeBack):
                return suspended.come_back
            raise  # not ours: user code raised Suspend itself (handled as its error by _unwound)
        except Abort as stop:  # the job stopped at an operation: undo, then end
            self.halted = None
            return self._finish(compensate_then_end, self, stop.cancelled, stop.error)
        except NondeterminismError as diverged:  # the saga's replay diverged: end where the log stops
            self.halted = None
            return self._finish(self._end_failed, diverged)

    def _unwound(self, raised: BaseException) -> NoReturn:
        halted = self.halted
        if halted is None:
            if isinstance(raised, StoreFailure | Abort | SimulatedCrash):
                raise raised
            self._failed(raised)  # the job function's own unhandled error (any exception)
        if raised is not halted:
            self._note_swallowed(f"raised {type(raised).__name__} instead")
        self._halt(halted)

    def _returned(self, output: Any) -> NoReturn:
        if self.halted is not None:
            self._note_swallowed("returned")
            self._halt(self.halted)
        if self.replay.diverged is not None:
            self._end_failed(self.replay.diverged)
        try:
            record = self.replay.begin(OpKind.END, "end")
        except NondeterminismError as diverged:  # the log holds more than today's code did
            self._end_failed(diverged)
        EndOp(record, EventType.JOB_COMPLETED, output=output).run(self)
        raise AssertionError("unreachable")  # pragma: no cover - run() always suspends

    def _halt(self, halted: BaseException) -> NoReturn:
        if isinstance(halted, NondeterminismError):
            self.halted = None
            self._end_failed(halted)
        raise halted

    def _failed(self, error: BaseException) -> NoReturn:
        if self.replay.diverged is not None:
            self._end_failed(self.replay.diverged)
        if self.compensations:
            compensate_then_end(self, False, error)
        EndOp(self._end_record(), EventType.JOB_FAILED, error=error).run(self)
        raise AssertionError("unreachable")  # pragma: no cover

    def _end_failed(self, error: BaseException) -> NoReturn:
        """End FAILED at once, no compensations: the log cannot be trusted past this point."""
        EndOp(self._end_record(), EventType.JOB_FAILED, error=error, abortable=False).run(self)
        raise AssertionError("unreachable")  # pragma: no cover

    def _end_record(self) -> OpRecord:
        try:
            return self.replay.begin(OpKind.END, "end")
        except NondeterminismError:
            return OpRecord(self.replay.position, OpKind.END, "end")

    # -- the operation host (see operations/base.py) -------------------------------------------

    def enter(self) -> Invocation:
        """Before each operation the job function asks for: once halted, the same halt again."""
        if self.halted is not None:
            self._note_swallowed("called another operation")
            raise self.halted
        if self.replay.diverged is not None:
            raise self.replay.diverged
        return self

    def halt(self, control: BaseException) -> None:
        if self.halted is None:
            self.halted = control

    def live_clock(self) -> Clock:
        clock: Clock = self.services.clock
        return clock

    def live_ids(self) -> IdSource:
        return self.services.ids

    def live(self, op: Operation[Any]) -> Invocation:
        """``op`` has no recorded outcome: run it, or commit in its place why the job stops here."""
        if self.crash_loop is not None:
            if op.abortable:
                self._commit_stop(op, EventType.OPERATION_ABORTED, self.crash_loop)
            if op.kind is OpKind.COMPENSATE:
                # A compensation that keeps killing its workers fails like one out of retries.
                error = self.recorder.error(self.crash_loop)
                event = self.commit(EventType.STEP_FAILED, op.record, error=error)
                self.suspend(ComeBack.after_commit(event, self.clock.now()))
        elif self.cancel_requested_at and op.abortable:
            self._commit_stop(op, EventType.CANCEL_REQUESTED, None)
        return self

    def stay(self, op: Operation[Any], suspended: Suspend) -> Invocation:
        """``op`` committed and raised ``suspended``: park the job function in it until the job's
        next tick on this worker and return that tick's invocation — or, if it may not stay
        (``Session.may_park``), or is discarded while parked, unwind it as without stickiness."""
        session = self.session
        if session is None or not session.may_park(self, op, suspended):
            raise suspended
        self._count_replayed()
        self.session = None
        come_back = suspended.come_back
        assert isinstance(come_back, ComeBack)  # checked by may_park
        resumed = session.park(self, come_back)
        resumed.session = session
        return resumed

    def suspend(self, come_back: ComeBack) -> NoReturn:
        suspended = Suspend(come_back)
        self.halt(suspended)
        raise suspended

    def _commit_stop(
        self, op: Operation[Any], event_type: EventType, error: BaseException | None
    ) -> NoReturn:
        op.on_stop(self)
        detail = {"requested_at": self.cancel_requested_at} if error is None else {"reason": "crash_loop"}
        status = JobStatus.COMPENSATING if self.compensations else JobStatus.RUNNING
        info = self.recorder.error(error) if error is not None else None
        event = self.commit(event_type, op.record, error=info, detail=detail, status=status)
        self.suspend(ComeBack.after_commit(event, self.clock.now()))

    def _note_swallowed(self, what: str) -> None:
        if self.swallowed is not None:
            return
        where = _user_location() or f"in job function {getattr(self.definition.fn, '__qualname__', '?')}"
        self.swallowed = (
            f"job {self.job_id}: the job function {what} after the runtime ended this invocation with "
            f"{type(self.halted).__name__} ({where}). An `except:` or `except BaseException:` around a "
            f"ctx operation caught it: re-raise it there (`except Exception:` does not catch it). "
            f"Nothing the function did after that was committed."
        )

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
        status: JobStatus | None = None,
        event_extra: dict[str, Any] | None = None,
        job_extra: dict[str, Any] | None = None,
    ) -> Event:
        """Commit ``event_type`` as this invocation's one outcome into the claimed slot.

        ``parked`` (``waiting_for``, ``due``) describes a job that parks; its commit is refused if a
        cancel was asked for meanwhile, and the cancel is committed instead. ``event_extra`` are more
        attributes of the event item, ``job_extra`` more of the job item (written with the event).
        """
        now = self.clock.now()
        event = build_event(self, event_type, op, now, started, result, error, next_attempt_at, detail)
        event |= event_extra or {}
        status = status or _status_after(event_type, op)
        update, remove, condition_free = job_projection(
            self, event_type, status, now, result, error, parked, next_attempt_at, job_extra
        )
        if update is not None and schema.TTL_ATTRIBUTE in update:
            event[schema.TTL_ATTRIBUTE] = update[schema.TTL_ATTRIBUTE]
        self.grant = None
        if ticks_at_once(event_type, next_attempt_at):
            # The next slot goes to the tick this commit sends: its holder needs no claim write.
            self.grant = secrets.token_hex(8)
            event["grant_token"] = self.grant
            event["grant_until"] = to_millis(now + self.services.settings.lease)
        self.services.faults.reach("before_commit")
        try:
            with runtime_io():
                self.services.log.commit(self.lease, event, update, remove, cancel_free=condition_free)
        except JobChanged as changed:
            asked = changed.current.get("cancel_requested_at") if changed.current else None
            self.cancel_requested_at = str(asked) if asked else None
            if op is None or not self.cancel_requested_at:
                raise StoreFailure(RuntimeError("the job item changed under the commit")) from None
            self._commit_stop(_Placeholder(op), EventType.CANCEL_REQUESTED, None)
        self.services.faults.reach("after_commit")
        self._measure(event_type, op, started, now, detail)
        if update is None:  # the job item stays: move the sweeper's deadline only if it is stale
            fresh = refreshed_attention(self, now, next_attempt_at)
            if fresh is not None:
                with runtime_io():
                    watch.refresh(self.services.jobs.table, self.job_id, fresh)
        stored = {k: v for k, v in event.items() if v is not None}
        stored |= {"state": COMMITTED, "fence": self.lease.fence, "worker_id": self.lease.worker_id}
        self.services.jobs.note_commit(self.job_id, stored)
        self.committed = Event.from_item(stored)
        return self.committed

    def _measure(
        self,
        event_type: EventType,
        op: OpRecord | None,
        started: datetime | None,
        now: datetime,
        detail: dict[str, Any] | None,
    ) -> None:
        telemetry = self.services.telemetry
        if op is not None:
            telemetry.operation(op.kind.value, now - (started or now))
        if event_type is EventType.SIGNAL_CONSUMED and detail and detail.get("arrived_at_ms") is not None:
            telemetry.signal_consumed(now - from_millis(int(detail["arrived_at_ms"])))
        if event_type in _ENDS:
            status = _STATUS_AFTER[event_type].value
            telemetry.job_ended(self.definition.name, status, compensated=bool(self.compensations))


_ENDS = (EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED)


class _Placeholder(Operation[Any]):
    """An operation already begun, re-entered only to commit a stop in its place."""

    kind = OpKind.STEP

    def replayed(self, outcome: Event, host: Any) -> Any:  # pragma: no cover - never replayed
        raise NotImplementedError

    def execute(self, inv: Invocation) -> NoReturn:  # pragma: no cover - never executed
        raise NotImplementedError


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
    EventType.CANCEL_REQUESTED: JobStatus.RUNNING,
    EventType.OPERATION_ABORTED: JobStatus.RUNNING,
    EventType.FAN_OUT_STARTED: JobStatus.WAITING,
    EventType.FAN_OUT_JOINED: JobStatus.RUNNING,
    EventType.CHILD_STARTED: JobStatus.WAITING,
    EventType.CHILD_ENDED: JobStatus.RUNNING,
    EventType.CONTINUED_AS_NEW: JobStatus.RUNNING,
}


def _status_after(event_type: EventType, op: OpRecord | None) -> JobStatus:
    if op is not None and op.kind is OpKind.COMPENSATE:
        return JobStatus.COMPENSATING
    return _STATUS_AFTER[event_type]


def _bound(inv: Invocation, session: Session | None, went_on: str | None) -> Invocation:
    """The invocation the job function ended in: a sticky one may have moved on to a later tick's.

    A function discarded while parked concludes nothing (its tick is settled already); if it
    caught its unwinding (``went_on``: it returned, raised something else), that is noted."""
    if session is None:
        return inv
    if session.discarded:
        if went_on is not None:
            session.current._note_swallowed(went_on)
        raise Discarded
    return session.current


def _user_location() -> str | None:
    """The innermost frame of user code on the stack: where the job function went on."""
    frame = sys._getframe(1)
    while frame is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith("aetheris") and module.split(".")[0] not in sys.stdlib_module_names:
            return f"at {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back  # type: ignore[assignment]
    return None
