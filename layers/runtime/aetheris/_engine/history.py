"""The log, seen by replay: the events of each durable operation, by the operation's position.

Operation ``i`` is the ``i``-th durable operation the job function asks for. Its events are its
attempts (``StepFailed`` … then ``StepCommitted``, or a final ``StepFailed``), or the job's end.
Deterministic values (``ctx.now()`` …) asked for before operation ``i`` are stored on its first
event, so they are recorded in the same write as the operation that follows them.

A job that called ``ctx.continue_as_new`` has runs: the history is the *current* run only, from its
``ContinuedAsNew`` event on. Positions keep counting across runs (run 2 starts at the position
after the continue), so every key made from a position — step ids, effect keys, callback waits,
child ids, branch slots — is new in each run without any key builder knowing about runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from aetheris._store.queue import MAX_DELAY
from aetheris.events import Event, EventType, OpKind

# Events that start an operation without settling it: the job is parked on it.
_PARKING = (
    EventType.WAIT_STARTED,
    EventType.TIMER_STARTED,
    EventType.FAN_OUT_STARTED,
    EventType.CHILD_STARTED,
)


@dataclass(slots=True)  # one per operation of a replayed log: no per-record ``__dict__``
class OpRecord:
    index: int
    kind: OpKind
    name: str
    events: list[Event] = field(default_factory=list)
    # Deterministic values (ctx.now() ...) asked for before this operation in this invocation and
    # not recorded yet: they are written with the operation's first event. (A tuple by default: a
    # replayed log's records never have any, and a list each was 10,000 more objects for the GC.)
    new_values: Sequence[dict[str, object]] = ()

    @property
    def step_id(self) -> str:
        return step_id(self.index, self.name)

    @property
    def outcome(self) -> Event | None:
        """The event that settles this operation, if it is settled."""
        last = self.events[-1] if self.events else None
        if last is None or last.type in _PARKING:
            return None
        if last.type is EventType.STEP_FAILED and last.next_attempt_at is not None:
            return None
        if last.type is EventType.SIGNAL_CONSUMED and self.kind is OpKind.STEP:
            return None  # a budget raise for a blocked step (operations/budget_wait.py): it runs again
        return last

    def first(self, event_type: EventType) -> Event | None:
        return next((e for e in self.events if e.type is event_type), None)

    @property
    def failures(self) -> int:
        return sum(1 for e in self.events if e.type is EventType.STEP_FAILED)

    @property
    def retry_due_at(self) -> datetime | None:
        last = self.events[-1] if self.events else None
        return last.next_attempt_at if last is not None and last.type is EventType.STEP_FAILED else None

    @property
    def recorded_values(self) -> list[object]:
        return list(self.events[0].values) if self.events else []


def step_id(index: int, name: str) -> str:
    """Stable across attempts and workers: the operation's position and name."""
    return f"{index}-{name}"


class History:
    def __init__(self, events: list[Event]) -> None:
        self.events = events = current_run(events)
        first = events[0] if events else None
        # The run's first position: 0, or the one after the continue that started this run.
        self.base = first.op + 1 if first and _starts_run(first) and first.op is not None else 0
        self.ops: dict[int, OpRecord] = {}
        # The signals consumed, in order: what budget raises and waits look at, without a walk of
        # the whole log on every step (a step's cost must not grow with the job's length).
        self.signals: list[Event] = []
        # Steps settled so far (``Budget.max_steps``): counted on first use, then kept up by ``add``.
        self._settled_steps: int | None = None
        for event in events:
            self._record(event)

    def add(self, event: Event) -> None:
        """Extend the log by one event committed after it (a sticky job's own commit: ``sticky.py``)."""
        before = self._settled(event.op)
        self.events.append(event)
        self._record(event)
        if self._settled_steps is not None:
            self._settled_steps += self._settled(event.op) - before

    def settled_steps(self) -> int:
        """How many steps of this run have an outcome (what ``Budget.max_steps`` counts): one walk
        of the operations per history, then O(1) as a sticky job's commits extend it."""
        if self._settled_steps is None:
            self._settled_steps = sum(
                1 for r in self.ops.values() if r.kind is OpKind.STEP and r.outcome is not None
            )
        return self._settled_steps

    def _settled(self, op: int | None) -> int:
        record = self.ops.get(op) if op is not None else None
        return int(record is not None and record.kind is OpKind.STEP and record.outcome is not None)

    def _record(self, event: Event) -> None:
        # Once per event of a cold tick's log: attributes read once, no helper calls.
        kind, op = event.type, event.op
        if kind is EventType.SIGNAL_CONSUMED:
            self.signals.append(event)
        elif kind is EventType.CONTINUED_AS_NEW:
            return  # the run's start, not one of its operations
        if op is None or event.op_kind is None:
            return
        record = self.ops.get(op)
        if record is None:  # not setdefault: that would build a record per event, used or not
            self.ops[op] = OpRecord(op, event.op_kind, event.name or "", [event])
        else:
            record.events.append(event)

    @property
    def last(self) -> Event:
        return self.events[-1]

    @property
    def next_seq(self) -> int:
        return self.last.seq + 1

    @property
    def run_start(self) -> Event | None:
        """The ``ContinuedAsNew`` event this run started from (``None`` in a job's first run)."""
        first = self.events[0] if self.events else None
        return first if first is not None and _starts_run(first) else None

    def consumed_signals(self) -> set[str]:
        """Ids of the signals the job's waits have consumed so far (earlier runs' included: each
        continue carries them, so a signal consumed once is never consumed again)."""
        start = self.run_start
        carried = {str(s) for s in start.detail.get("consumed_signals", ())} if start else set()
        return carried | {str(e.detail["signal_id"]) for e in self.signals}

    @property
    def latest_op(self) -> OpRecord | None:
        """The operation of the last event (positions only grow along the log)."""
        return self.ops[next(reversed(self.ops))] if self.ops else None


def _starts_run(event: Event) -> bool:
    return event.type is EventType.CONTINUED_AS_NEW


def current_run(events: list[Event]) -> list[Event]:
    """The events of the job's current run: from its last ``ContinuedAsNew`` on (all, if none)."""
    start = EventType.CONTINUED_AS_NEW
    for i in range(len(events) - 1, -1, -1):
        if events[i].type is start:  # (``_starts_run`` inline: a first run walks its whole log)
            return events[i:] if i else events
    return events


_ENDS = (EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED)


def next_tick_delay(last: Event, now: datetime) -> timedelta | None:
    """When the job needs its next tick after ``last`` was committed; ``None``: no message.

    A wait without a timeout needs no tick (the signal wakes it); a timer or timeout further away
    than SQS can delay a message is found by the sweeper on the by-due index instead.
    """
    if last.type in _ENDS:
        return None
    if last.type is EventType.STEP_FAILED and last.next_attempt_at is not None:
        return max(timedelta(0), last.next_attempt_at - now)
    if last.type in _PARKING:
        due = due_at(last)
        if due is None or due - now > MAX_DELAY:
            return None
        return max(timedelta(0), due - now)
    return timedelta(0)


def ticks_at_once(event_type: EventType, next_attempt_at: datetime | None) -> bool:
    """Does a commit of ``event_type`` send the job's next tick at once (not parked, not ended, no
    backoff)? Only such a commit grants the next slot to its tick (``_store/log.py``)."""
    if event_type in _ENDS or event_type in _PARKING:
        return False
    return not (event_type is EventType.STEP_FAILED and next_attempt_at is not None)


def due_at(event: Event) -> datetime | None:
    """When a parked operation needs a tick by itself: the timer's fire time or the wait's deadline."""
    raw = event.detail.get("fire_at") or event.detail.get("deadline")
    return datetime.fromisoformat(raw) if raw else None
