"""What an invocation tells its worker when it ends: whether it committed, and when to come back.

Every live operation ends its invocation by raising ``Suspend`` carrying a ``ComeBack`` — the
outcome travels with the control flow, never as flags on a shared object read afterwards (the AWS
durable SDK's ``SuspendExecution`` does the same). The worker reads it in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from aetheris._engine.history import next_tick_delay
from aetheris._store.queue import Tick
from aetheris.events import Event


@dataclass(frozen=True)
class ComeBack:
    committed: Event | None = None  # the one outcome this invocation committed, if any
    after: timedelta | None = None  # send the job's next tick after this; None: send none
    release: bool = False  # nothing was committed: give the slot back unfilled
    # Released while parked: look once more for a wake-up (signal, cancel) whose tick found the
    # slot held and was dropped — the second look that closes that race.
    look_again: bool = False
    # More ticks to send once the commit is in: a fan-out's first branches.
    also: tuple[Tick, ...] = ()

    @classmethod
    def after_commit(cls, event: Event, now: datetime, *, wake_now: bool = False) -> ComeBack:
        """Committed ``event``; the next tick when the log says (at once if a wake-up landed meanwhile)."""
        return cls(committed=event, after=timedelta(0) if wake_now else next_tick_delay(event, now))

    @classmethod
    def retry_in(cls, delay: timedelta) -> ComeBack:
        """Not due yet (a retry's backoff, a short timer): release and tick again after ``delay``."""
        return cls(after=max(delay, timedelta(0)), release=True)

    @classmethod
    def when_woken(cls) -> ComeBack:
        """Nothing to do until a signal, a cancel or the sweeper wakes the job: release, send nothing."""
        return cls(release=True, look_again=True)
