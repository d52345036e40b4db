"""The step worker: one step-queue message advances one job by exactly one operation.

    load (one consistent Query) → is this tick current? → claim slot n (the lease)
        → replay + run one operation → commit into slot n → enqueue the tick for slot n + 1

A tick names the slot it is for, so duplicates and stale ticks are recognised without a write:

* slot n is already committed → the tick is stale: acknowledge it. If it is a *redelivery* and
  nobody has claimed the next slot, its successor may have been lost between commit and enqueue
  (the worker died there): send it again. Fresh messages never do, so duplicates cannot multiply.
* slot n is claimed by a live lease → someone holds the job. A first delivery is dropped (the
  holder still has its own message and will enqueue the next tick); a redelivery is deferred
  (reported as failed, so SQS shows it again after the visibility timeout) in case the holder died.
* otherwise the tick claims slot n — taking over an expired claim grows the fence, so the old
  holder can never commit.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError

from aetheris import _log_context
from aetheris._clock import from_millis, to_millis
from aetheris._engine.branch_ticks import handle_branch
from aetheris._engine.come_back import ComeBack
from aetheris._engine.fanout_rule import FanOutSpec
from aetheris._engine.faults import SimulatedCrash
from aetheris._engine.history import History, next_tick_delay
from aetheris._engine.invocation import Invocation
from aetheris._engine.parsed_log import ParsedLogs
from aetheris._engine.services import Services
from aetheris._engine.sticky import StickyJobs
from aetheris._engine.tracing import subsegment
from aetheris._store.branches import BranchStore
from aetheris._store.dynamo import Item, TransactionConflict
from aetheris._store.jobs import COMMITTED, JobSnapshot
from aetheris._store.log import SlotLease, SlotTaken
from aetheris._store.queue import Tick
from aetheris._store.retention import expires_at, pass_pending
from aetheris.app import App
from aetheris.errors import LeaseLost, UnknownJobType, WorkerCrashLoop
from aetheris.events import Event, EventType, JobStatus

# Every line carries the tick's keys (job_id, job_type, seq, attempt, fence, worker_id: _log_context).
log = _log_context.logger("aetheris.worker")
# Left for committing and enqueueing after a step that used all of its time.
STEP_TIME_MARGIN = timedelta(seconds=5)


class TickOutcome(enum.StrEnum):
    ADVANCED = "advanced"  # one operation committed
    STALE = "stale"  # the slot was already committed, or the job is finished
    BUSY = "busy"  # another worker holds the slot; dropped
    DEFERRED = "deferred"  # to be redelivered later (report as a batch item failure)
    RESCHEDULED = "rescheduled"  # came before its retry time; sent again with the remaining delay
    IDLE = "idle"  # a parked job woken with nothing to do (no signal yet, not due)
    LEASE_LOST = "lease_lost"  # we were fenced out mid-operation; nothing of ours was committed
    RETRY = "retry"  # the tick failed (store error, runtime bug): redelivered after the visibility timeout
    UNKNOWN_JOB = "unknown_job"
    # One operation committed and it ended the job (counted apart: the dashboard's finished jobs).
    JOB_COMPLETED = "job_completed"
    JOB_FAILED = "job_failed"
    JOB_CANCELLED = "job_cancelled"

    @property
    def acknowledge(self) -> bool:
        return self not in (TickOutcome.DEFERRED, TickOutcome.RETRY)


_ENDED = {
    EventType.JOB_COMPLETED: TickOutcome.JOB_COMPLETED,
    EventType.JOB_FAILED: TickOutcome.JOB_FAILED,
    EventType.JOB_CANCELLED: TickOutcome.JOB_CANCELLED,
}


class Worker:
    def __init__(self, app: App, services: Services, worker_id: str) -> None:
        self.app = app
        self.services = services
        self.worker_id = worker_id
        # Warm jobs' functions kept alive between their ticks here: no replay from the top.
        self.sticky = StickyJobs(services.settings.sticky_jobs, holds=services.jobs.cached)
        self.parsed = ParsedLogs()  # and the others' logs parsed once, not on every tick

    def handle(self, tick: Tick, receive_count: int = 1, time_left: timedelta | None = None) -> TickOutcome:
        """Advance the job by one operation; ``time_left`` is what the Lambda invocation has left."""
        with _log_context.tick(job_id=tick.job_id, seq=tick.seq, worker_id=self.worker_id):
            try:
                return self._handle(tick, receive_count, time_left)
            except SimulatedCrash:
                self.sticky.close()  # the process dies: no job function it kept parked survives it
                raise

    def _handle(self, tick: Tick, receive_count: int, time_left: timedelta | None) -> TickOutcome:
        services = self.services
        if tick.branch is not None:
            return handle_branch(self, tick, receive_count, time_left)
        snapshot = services.jobs.load(tick.job_id)
        if snapshot is None:
            log.warning("tick for unknown job %s", tick.job_id)
            return TickOutcome.UNKNOWN_JOB
        _log_context.add(job_type=snapshot.job.get("job_type"))
        if snapshot.status.is_terminal:
            self.sticky.forget(tick.job_id)
            if receive_count > 1:
                self._wake_parent(snapshot.job)  # the child's end may have died before waking it
            return TickOutcome.STALE
        slot = snapshot.next_seq
        if tick.seq != slot:
            if tick.seq < slot and receive_count > 1 and snapshot.claim is None:
                self._resend_possibly_lost_tick(snapshot)
            return TickOutcome.STALE
        try:
            definition = self.app.get(snapshot.job["job_type"], snapshot.job.get("version"))
        except UnknownJobType as unknown:
            log.error("cannot advance job %s: %s", tick.job_id, unknown)
            return TickOutcome.DEFERRED
        now = services.clock.now()
        if snapshot.claim is not None and int(snapshot.claim.get("lease_until", 0)) >= to_millis(now):
            return self._held(snapshot.claim, receive_count)
        grant = Grant.on(snapshot)
        if grant is not None and snapshot.claim is None and grant.until_ms >= to_millis(now):
            if tick.grant != grant.token or receive_count > 1:
                # The slot is held by the tick its commit sent (a redelivery of that tick, too,
                # waits: its first delivery may still be running).
                return self._held(None, receive_count)
            lease = services.log.granted(tick.job_id, slot, self.worker_id, to_millis(now), grant.until_ms)
        else:
            try:
                lease = services.log.claim(
                    tick.job_id,
                    slot,
                    self.worker_id,
                    to_millis(now),
                    to_millis(now + services.settings.lease),
                    grant_span=(grant.from_ms, grant.until_ms) if grant is not None else None,
                    own_grant=grant is not None and tick.grant == grant.token and receive_count == 1,
                )
            except SlotTaken as taken:
                return self._held(taken.current, receive_count)
        budget, crash_loop = self._limits(lease, time_left)
        session = self.sticky.claim(snapshot, definition, lease, crash_loop)  # its log, untouched?
        invocation = Invocation(
            services,
            definition,
            snapshot,
            lease,
            budget,
            self.app.strict_effects,
            crash_loop=crash_loop,
            resumes=session.current if session is not None else None,
            events=None if session is not None else self.parsed.events(tick.job_id, snapshot.events),
        )
        invocation.app = self.app
        _log_context.add(fence=lease.fence, attempt=attempt_due(invocation.history))
        if lease.reclaimed_from is not None:
            log.info(
                "took slot %s over from %s, whose lease expired (fence now %s)",
                slot,
                lease.reclaimed_from,
                lease.fence,
                extra={"reclaimed_from": lease.reclaimed_from},
            )
        try:
            with subsegment("tick", job_id=tick.job_id, seq=slot):
                come_back = self.sticky.run(invocation, session)
        except BaseException as error:  # noqa: BLE001 - the one table below decides what each one means
            return self._failed_tick(error, lease)
        _log_context.add(attempt=invocation.attempt)
        if invocation.swallowed:
            log.error(invocation.swallowed)
        return self._settle(invocation, come_back, tick)

    def _failed_tick(self, error: BaseException, lease: SlotLease) -> TickOutcome:
        """The one place a tick's exception becomes its outcome.

        * ``LeaseLost``: fenced out; nothing of ours was committed and the new holder moves the job
          on — acknowledge.
        * a store error (DynamoDB, SQS, S3): not the job's fault — give the slot back (so the
          redelivery can start at once) and let SQS redeliver the message; the error is kept on the
          slot, so a tick that fails the same way every time trips the crash-loop guard.
        * any other ``Exception``: a runtime bug — the same, logged with its stack.
        * ``SimulatedCrash`` (tests) and anything else that is no ``Exception``: the process dies.
        """
        if isinstance(error, LeaseLost):
            log.warning("fenced out: %s", error)
            return TickOutcome.LEASE_LOST
        if isinstance(error, SimulatedCrash) or not isinstance(error, Exception):
            raise error
        if isinstance(error, BotoCoreError | ClientError | TransactionConflict):
            log.warning("tick for job %s failed on a store call, retried: %s", lease.job_id, error)
        else:
            log.exception("tick for job %s failed", lease.job_id)
        try:
            self.services.log.release(lease, f"{type(error).__name__}: {error}")
        except (BotoCoreError, ClientError) as also:
            log.warning("could not give slot %s of job %s back: %s", lease.seq, lease.job_id, also)
        return TickOutcome.RETRY

    def _settle(self, invocation: Invocation, come_back: ComeBack, tick: Tick) -> TickOutcome:
        services, slot = self.services, tick.seq
        if come_back.release:
            services.log.release(invocation.lease)
            if come_back.after is not None:
                services.queue.send(Tick(job_id=tick.job_id, seq=slot), come_back.after)
                return TickOutcome.RESCHEDULED
            if come_back.look_again and self._woken_while_held(invocation):
                services.queue.send(Tick(job_id=tick.job_id, seq=slot))
            return TickOutcome.IDLE
        committed = come_back.committed
        if committed is not None and committed.type is EventType.STEP_FAILED:
            _log_failed_attempt(committed)
        if come_back.after is not None:
            services.faults.reach("before_enqueue")
            grant = invocation.grant if come_back.after <= timedelta(0) else None
            services.queue.send(Tick(job_id=tick.job_id, seq=slot + 1, grant=grant), come_back.after)
        for also in come_back.also:  # a fan-out's first branches, once its start is committed
            services.faults.reach("before_enqueue")
            services.queue.send(also)
        if committed is not None and committed.type in _ENDED:
            self._wake_parent(invocation.snapshot.job)
            # A crash point still: the outcome is committed, the tick not yet acknowledged.
            services.faults.reach("before_retention")
            if pass_pending(invocation.snapshot.job):  # a job from before provisional TTLs
                self._expire(tick.job_id, expires_at(committed.at, services.settings.retention))
            return _ENDED[committed.type]
        return TickOutcome.ADVANCED

    def _expire(self, job_id: str, at: int) -> None:
        """Give the finished job's other items their TTL; best effort, the outcome is committed already.

        Only for a job from before provisional TTLs (no ``ttl_floor``): every other job's items
        carry their TTL from their write, and its final tick does no pass (``_store/retention.py``).

        A store error is logged and the tick still acknowledged: the job item expires anyway and
        stays on the by-due index, where the sweeper finds it and runs the pass again.
        """
        try:
            self.services.retention.expire(job_id, at)
        except (ClientError, BotoCoreError) as error:
            log.warning("retention pass for job %s failed, the sweeper redoes it: %s", job_id, error)

    def _limits(
        self, lease: SlotLease, time_left: timedelta | None
    ) -> tuple[timedelta | None, WorkerCrashLoop | None]:
        """What a tick holding ``lease`` may spend (the function's time left, less a margin to
        commit in), and the crash loop to fail the job with if ticks keep dying on this slot."""
        budget = None if time_left is None else max(time_left - STEP_TIME_MARGIN, timedelta(seconds=1))
        crash_loop = None
        if lease.abandoned_claims >= self.services.settings.max_slot_claims:
            # Ticks keep dying (or failing) on this operation: fail the job there instead.
            crash_loop = WorkerCrashLoop(lease.job_id, lease.seq, lease.abandoned_claims, lease.last_error)
        return budget, crash_loop

    def _held(self, current: Item | None, receive_count: int) -> TickOutcome:
        if current is not None and current.get("state") == COMMITTED:
            return TickOutcome.STALE
        return TickOutcome.DEFERRED if receive_count > 1 else TickOutcome.BUSY

    def _woken_while_held(self, invocation: Invocation) -> bool:
        """Did a wake-up (a signal, a cancel) come while we held the parked job's slot?

        Its tick found the slot held and was dropped as BUSY, trusting the holder to move the job
        on; an idle holder does not. So after giving the slot back it looks once more, the same
        second look that closes the race between parking and signalling: either this look sees
        the signal or cancel, or the wake-up's tick comes after the release and claims the slot.
        """
        services = self.services
        job = services.jobs.get(invocation.job_id)
        if job is None or JobStatus(job["status"]).is_terminal:
            return False
        if job.get("cancel_requested_at"):
            return True
        name = job.get("waiting_for")
        return bool(name) and bool(
            services.inbox.pending(invocation.job_id, str(name), invocation.history.consumed_signals())
        )

    def _resend_possibly_lost_tick(self, snapshot: JobSnapshot) -> None:
        last = Event.from_item(snapshot.events[-1])
        if last.type is EventType.FAN_OUT_STARTED and last.op is not None:
            self._resend_first_branches(last)
            return
        now = self.services.clock.now()
        delay = next_tick_delay(last, now)
        if delay is None:
            return
        grant = Grant.on(snapshot)
        if grant is not None:
            # Its grant's tick may be running: the copy comes once the grant has run out, and then
            # claims the slot (or finds it committed) like any tick without the grant.
            delay = max(delay, from_millis(grant.until_ms) - now + timedelta(seconds=1))
        self.services.queue.send(Tick(job_id=last.job_id, seq=snapshot.next_seq), delay)

    def _wake_parent(self, job: Item) -> None:
        """A child job ended: tick its parent at the slot after the parent's ``ChildStarted``."""
        parent = job.get("parent_id")
        if parent:
            self.services.faults.reach("before_enqueue")
            self.services.queue.send(Tick(job_id=str(parent), seq=int(job.get("parent_seq", 0))))

    def _resend_first_branches(self, started: Event) -> None:
        """The fan-out's start was committed and its worker may have died before sending the
        first branches' ticks: send those of the first branches that have no slot yet."""
        assert started.op is not None
        spec = FanOutSpec.from_detail(started.detail)
        branches = BranchStore(self.services.jobs.table).load(started.job_id, started.op)
        for b in range(spec.initial):
            if b not in branches.lanes:
                self.services.queue.send(Tick(job_id=started.job_id, seq=0, branch=f"{started.op}.{b}"))


@dataclass(frozen=True)
class Grant:
    """The grant the last commit made on the next slot: its token (sent in the tick) and lease end."""

    token: str
    from_ms: int  # the granting commit's time
    until_ms: int

    @classmethod
    def on(cls, snapshot: JobSnapshot) -> Grant | None:
        last = snapshot.events[-1] if snapshot.events else None
        if last is None or not last.get("grant_token"):
            return None
        granted_at = to_millis(datetime.fromisoformat(str(last["at"])))
        return cls(str(last["grant_token"]), granted_at, int(last.get("grant_until", 0)))


def attempt_due(history: History) -> int:
    """The attempt of the operation this tick advances, as its commit will record it: the
    unsettled operation's failures + 1 (a step retried, a wait parked on), else 1 (a new one)."""
    last = history.latest_op
    return last.failures + 1 if last is not None and last.outcome is None else 1


def _log_failed_attempt(event: Event) -> None:
    # The error's type only: its message is user text and may quote what the step was given.
    error = event.error.type if event.error is not None else "an error"
    if event.next_attempt_at is not None:
        log.info(
            "step %s failed on attempt %s (%s); attempt %s at %s",
            event.name,
            event.attempt,
            error,
            (event.attempt or 1) + 1,
            event.next_attempt_at.isoformat(),
            extra={"step": event.name},
        )
    else:
        log.info(
            "step %s failed on attempt %s (%s), no attempts left",
            event.name,
            event.attempt,
            error,
            extra={"step": event.name},
        )
