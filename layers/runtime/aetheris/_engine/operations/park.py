"""Operations that park the job: ``wait_for_signal`` and ``sleep``. A parked job holds no lease,
no Lambda and — unless its timer or timeout is near — no queue message.

Wait: if an unconsumed signal of that name is in the inbox, consume it (``SignalConsumed``, its
payload recorded so replay returns it). Otherwise record ``WaitStarted`` (status ``WAITING``) and
*then* look in the inbox again: the signaller writes the inbox and then looks at the job, so
whichever of the two comes second sees the other and no wake-up is lost. The same holds for a
cancel: the parking commit is refused if a cancel was asked for meanwhile (its condition), and a
cancel asked for after it finds the job parked and ticks it. A tick past the deadline records
``WaitTimedOut``; an early tick (a duplicate, or a wake-up for a signal already consumed) changes
nothing and releases the slot.

Sleep: ``TimerStarted`` (status ``SLEEPING``, fire time on the by-due index), then ``TimerFired``
when a tick comes at or after the fire time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from aetheris._engine.come_back import ComeBack
from aetheris._engine.history import OpRecord, due_at
from aetheris._engine.operations.base import Operation, OperationHost
from aetheris._engine.store_io import runtime_io
from aetheris._store.queue import MAX_DELAY
from aetheris.errors import ErrorInfo, WaitTimeout
from aetheris.events import Event, EventType, OpKind

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


class WaitOp(Operation[Any]):
    kind = OpKind.WAIT

    def __init__(
        self, record: OpRecord, signal: str, timeout: timedelta | None, deadline: datetime | None = None
    ) -> None:
        super().__init__(record)
        # ``deadline``: a fixed end (a callback's expiry) instead of ``timeout`` from when it parks.
        self.signal, self.timeout, self.deadline = signal, timeout, deadline

    def replayed(self, outcome: Event, host: OperationHost) -> Any:
        if outcome.type is EventType.SIGNAL_CONSUMED:
            with runtime_io():  # a big payload was offloaded when it was sent
                return host.payloads.json(outcome.result)
        raise WaitTimeout(self.signal, str(outcome.detail.get("deadline")))

    def execute(self, inv: Invocation) -> NoReturn:
        now = inv.clock.now()
        consumed = inv.history.consumed_signals()
        with runtime_io():
            arrived = inv.services.inbox.pending(inv.job_id, self.signal, consumed)
        if arrived:
            first = arrived[0]
            detail = {
                "signal": self.signal,
                "signal_id": first.signal_id,
                "arrived_at_ms": first.arrived_at_ms,
            }
            event = inv.commit(
                EventType.SIGNAL_CONSUMED, self.record, result=first.payload_json, detail=detail
            )
            inv.suspend(ComeBack.after_commit(event, now))
        started = self.record.first(EventType.WAIT_STARTED)
        if started is None:
            deadline = self.deadline or (now + self.timeout if self.timeout is not None else None)
            event = inv.commit(
                EventType.WAIT_STARTED,
                self.record,
                detail={"signal": self.signal, "deadline": deadline.isoformat() if deadline else None},
                parked={"waiting_for": self.signal, "due": deadline},
            )
            with runtime_io():
                landed = inv.services.inbox.pending(inv.job_id, self.signal, consumed)
            # The signal landed while we parked: its sender may have missed us; tick again at once.
            inv.suspend(ComeBack.after_commit(event, now, wake_now=bool(landed)))
        deadline = due_at(started)
        if deadline is not None and now >= deadline:
            event = inv.commit(
                EventType.WAIT_TIMED_OUT,
                self.record,
                error=ErrorInfo.of(WaitTimeout(self.signal, deadline.isoformat())),
                detail={"signal": self.signal, "deadline": deadline.isoformat()},
            )
            inv.suspend(ComeBack.after_commit(event, now))
        inv.suspend(ComeBack.when_woken())


class SleepOp(Operation[None]):
    kind = OpKind.SLEEP

    def __init__(self, record: OpRecord, duration: timedelta) -> None:
        super().__init__(record)
        self.duration = duration

    def replayed(self, outcome: Event, host: OperationHost) -> None:
        return None

    def execute(self, inv: Invocation) -> NoReturn:
        now = inv.clock.now()
        started = self.record.first(EventType.TIMER_STARTED)
        if started is None:
            fire_at = now + max(self.duration, timedelta(0))
            event = inv.commit(
                EventType.TIMER_STARTED,
                self.record,
                detail={"fire_at": fire_at.isoformat(), "duration_s": self.duration.total_seconds()},
                parked={"due": fire_at},
            )
            inv.suspend(ComeBack.after_commit(event, now))
        fire_at = _fire_at(started.detail)
        if now >= fire_at:
            event = inv.commit(EventType.TIMER_FIRED, self.record, detail={"fire_at": fire_at.isoformat()})
            inv.suspend(ComeBack.after_commit(event, now))
        if fire_at - now <= MAX_DELAY:
            inv.suspend(ComeBack.retry_in(fire_at - now))
        inv.suspend(ComeBack.when_woken())  # the sweeper ticks it from the by-due index when it is due


def _fire_at(detail: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(detail["fire_at"]))
