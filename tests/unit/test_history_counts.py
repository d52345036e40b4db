"""``History.settled_steps``: what ``Budget.max_steps`` counts, without a walk of the log per step —
the same count a fresh ``History`` of the log gives, at every length, as a sticky job's own commits
extend it (``History.add``)."""

from __future__ import annotations

from typing import Any

from aetheris._engine.history import History
from aetheris.events import Event, EventType, OpKind

AT = "2026-12-01T09:00:00+00:00"


def event(seq: int, op: int | None, kind: OpKind | None, type_: EventType, **extra: Any) -> Event:
    item = {"job_id": "j", "seq": seq, "type": type_.value, "at": AT, "fence": 1, "attempt": 1}
    item |= {"worker_id": "w", "op": op, "op_kind": kind.value if kind else None, "name": "s", **extra}
    return Event.from_item(item)


def log() -> list[Event]:
    """Steps that commit, fail for good, wait to be retried, block on a budget; a wait; a sleep."""
    return [
        event(0, None, None, EventType.JOB_CREATED),
        event(1, 0, OpKind.STEP, EventType.STEP_COMMITTED, result="1"),
        event(2, 1, OpKind.STEP, EventType.STEP_FAILED, next_attempt_at=AT),  # to be retried
        event(3, 1, OpKind.STEP, EventType.STEP_COMMITTED, result="2"),  # settled on its retry
        event(4, 2, OpKind.WAIT, EventType.WAIT_STARTED),  # a wait is no step
        event(5, 2, OpKind.WAIT, EventType.SIGNAL_CONSUMED, detail={"signal_id": "a"}),
        event(6, 3, OpKind.STEP, EventType.STEP_FAILED),  # failed for good: settled
        event(7, 4, OpKind.STEP, EventType.SIGNAL_CONSUMED, detail={"signal_id": "b"}),  # budget raise
        event(8, 5, OpKind.SLEEP, EventType.TIMER_STARTED, detail={"fire_at": AT}),
        event(9, 5, OpKind.SLEEP, EventType.TIMER_FIRED),
        event(10, 6, OpKind.STEP, EventType.STEP_FAILED, next_attempt_at=AT),  # retry pending
        event(11, 6, OpKind.STEP, EventType.STEP_COMMITTED, result="3"),
    ]


def walked(history: History) -> int:
    """The count as ``_over_step_budget`` took it before: a walk of every operation."""
    return sum(1 for r in history.ops.values() if r.kind is OpKind.STEP and r.outcome is not None)


def test_history_settled_steps_counts_steps_with_an_outcome_only() -> None:
    history = History(log())

    assert history.settled_steps() == walked(history) == 4  # ops 0, 1, 3 and 6; not 4 (blocked)


def test_history_settled_steps_stays_right_as_commits_extend_the_history() -> None:
    events = log()
    grown = History(events[:1])
    assert grown.settled_steps() == 0  # counted now, then only kept up
    for n, next_event in enumerate(events[1:], start=2):
        grown.add(next_event)

        fresh = History(events[:n])
        assert grown.settled_steps() == fresh.settled_steps() == walked(fresh), f"after {n} events"


def test_history_settled_steps_counted_late_sees_every_event_added_before() -> None:
    events = log()
    history = History(events[:3])
    for next_event in events[3:]:
        history.add(next_event)  # no count asked for yet: nothing is kept up

    assert history.settled_steps() == walked(history) == 4
