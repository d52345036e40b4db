"""Operations that park the job: ``wait_for_signal`` and ``sleep``. A parked job holds no lease,
no Lambda and — unless its timer or timeout is near — no queue message.

Wait: if an unconsumed signal of that name is in the inbox, consume it (``SignalConsumed``, its
payload recorded so replay returns it). Otherwise record ``WaitStarted`` (status ``WAITING``) and
*then* look in the inbox again: the signaller writes the inbox and then looks at the job, so
whichever of the two comes second sees the other and no wake-up is lost. A tick past the deadline
records ``WaitTimedOut``; an early tick (a duplicate, or a wake-up for a signal already consumed)
does nothing.

Sleep: ``TimerStarted`` (status ``SLEEPING``, fire time on the by-due index), then ``TimerFired``
when a tick comes at or after the fire time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aetheris._engine.history import OpRecord, due_at
from aetheris._engine.store_io import runtime_io
from aetheris._store.queue import MAX_DELAY
from aetheris.errors import ErrorInfo, Suspend, WaitTimeout
from aetheris.events import EventType

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


def wait_for_signal(inv: Invocation, op: OpRecord, name: str, timeout: timedelta | None) -> Any:
    outcome = op.outcome
    if outcome is not None:  # replay: the recorded signal, or the recorded timeout
        if outcome.type is EventType.SIGNAL_CONSUMED:
            with runtime_io():  # a big payload was offloaded when it was sent
                return inv.payloads.json(outcome.result)
        raise WaitTimeout(name, str(outcome.detail.get("deadline")))
    inv.check_stop()
    now = inv.clock.now()
    consumed = inv.history.consumed_signals()
    with runtime_io():
        arrived = inv.services.inbox.pending(inv.job_id, name, consumed)
    if arrived:
        first = arrived[0]
        inv.commit(
            EventType.SIGNAL_CONSUMED,
            op,
            result=first.payload_json,
            detail={"signal": name, "signal_id": first.signal_id, "arrived_at_ms": first.arrived_at_ms},
        )
        raise Suspend
    started = op.first(EventType.WAIT_STARTED)
    if started is None:
        deadline = now + timeout if timeout is not None else None
        inv.commit(
            EventType.WAIT_STARTED,
            op,
            detail={"signal": name, "deadline": deadline.isoformat() if deadline else None},
            parked={"waiting_for": name, "due": deadline},
        )
        with runtime_io():
            landed = inv.services.inbox.pending(inv.job_id, name, consumed)
        if landed:
            inv.wake_now = True  # the signal landed while we parked: its sender may have missed us
        raise Suspend
    deadline = due_at(started)
    if deadline is not None and now >= deadline:
        error = WaitTimeout(name, deadline.isoformat())
        inv.commit(
            EventType.WAIT_TIMED_OUT,
            op,
            error=ErrorInfo.of(error),
            detail={"signal": name, "deadline": deadline.isoformat()},
        )
        raise Suspend
    inv.idle = True
    raise Suspend


def sleep(inv: Invocation, op: OpRecord, duration: timedelta) -> None:
    outcome = op.outcome
    if outcome is not None:
        return
    inv.check_stop()
    now = inv.clock.now()
    started = op.first(EventType.TIMER_STARTED)
    if started is None:
        fire_at = now + max(duration, timedelta(0))
        inv.commit(
            EventType.TIMER_STARTED,
            op,
            detail={"fire_at": fire_at.isoformat(), "duration_s": duration.total_seconds()},
            parked={"due": fire_at},
        )
        raise Suspend
    fire_at = _fire_at(started.detail)
    if now >= fire_at:
        inv.commit(EventType.TIMER_FIRED, op, detail={"fire_at": fire_at.isoformat()})
        raise Suspend
    if fire_at - now <= MAX_DELAY:
        inv.reschedule = fire_at - now
    else:
        inv.idle = True  # the sweeper ticks it from the by-due index when it is due
    raise Suspend


def _fire_at(detail: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(detail["fire_at"]))
