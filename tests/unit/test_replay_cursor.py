"""The replay cursor: recorded operations and values are checked position by position."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aetheris import Event, EventType, NondeterminismError
from aetheris._engine.history import History
from aetheris._engine.replay import Replay
from aetheris.events import OpKind

AT = datetime(2026, 1, 1, tzinfo=UTC)


def event(seq: int, op: int, name: str, values: list[object] | None = None) -> Event:
    return Event(
        job_id="j",
        seq=seq,
        type=EventType.STEP_COMMITTED,
        at=AT,
        fence=1,
        attempt=1,
        worker_id="w",
        op=op,
        op_kind=OpKind.STEP,
        name=name,
        result="1",
        values=values or [],
    )


def created() -> Event:
    return Event(job_id="j", seq=0, type=EventType.JOB_CREATED, at=AT, fence=0, attempt=0, worker_id="c")


def test_replay_same_operations_return_their_records() -> None:
    replay = Replay("j", History([created(), event(1, 0, "a"), event(2, 1, "b")]))
    assert replay.is_replaying
    assert replay.begin(OpKind.STEP, "a").outcome is not None
    assert replay.begin(OpKind.STEP, "b").outcome is not None
    assert not replay.is_replaying
    assert replay.begin(OpKind.STEP, "c").outcome is None


def test_replay_renamed_operation_raises_and_is_remembered() -> None:
    replay = Replay("j", History([created(), event(1, 0, "a")]))
    with pytest.raises(NondeterminismError) as raised:
        replay.begin(OpKind.STEP, "z")
    assert raised.value.position == 0 and replay.diverged is raised.value


def test_replay_values_come_back_from_the_log_not_from_the_source() -> None:
    recorded = [{"kind": "uuid", "value": "u-1"}]
    replay = Replay("j", History([created(), event(1, 0, "a", recorded)]))
    assert replay.value("uuid", lambda: pytest.fail("a recorded value must not be made again")) == "u-1"
    replay.begin(OpKind.STEP, "a")


def test_replay_live_values_are_kept_for_the_next_commit() -> None:
    replay = Replay("j", History([created()]))
    assert replay.value("random", lambda: 0.5) == 0.5
    assert replay.pending_values == [{"kind": "random", "value": 0.5}]


def test_replay_extra_value_request_diverges() -> None:
    replay = Replay("j", History([created(), event(1, 0, "a", [{"kind": "now", "value": "t"}])]))
    replay.value("now", lambda: "x")
    with pytest.raises(NondeterminismError):
        replay.value("now", lambda: "x")
