"""``ParsedLogs``: a warm tick parses only the events it has not seen, and never trusts items that
are not the very ones it parsed."""

from __future__ import annotations

from typing import Any

import pytest

from aetheris._engine import parsed_log
from aetheris._engine.parsed_log import ParsedLogs
from aetheris.events import Event


def item(seq: int) -> dict[str, Any]:
    return {
        "job_id": "j",
        "seq": seq,
        "type": "StepCommitted",
        "at": "2026-01-01T00:00:00+00:00",
        "fence": 1,
        "attempt": 1,
        "worker_id": "w",
        "op": seq - 1,
        "op_kind": "step",
        "name": "s",
        "result": str(seq),
    }


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    seen: list[int] = []
    real = parsed_log.parse_events

    def counting(raw: list[dict[str, Any]]) -> list[Event]:
        seen.extend(int(item["seq"]) for item in raw)
        return real(raw)

    monkeypatch.setattr(parsed_log, "parse_events", counting)
    return seen


def test_the_known_prefix_is_not_parsed_again(parses: list[int]) -> None:
    logs = ParsedLogs()
    items = [item(s) for s in range(1, 6)]
    first = logs.events("j", items)
    grown = [*items, item(6), item(7)]
    second = logs.events("j", grown)

    assert parses == [1, 2, 3, 4, 5, 6, 7]
    assert [e.seq for e in second] == [1, 2, 3, 4, 5, 6, 7]
    assert second[0] is first[0]
    second.append(second[0])  # the caller's list is its own
    assert len(logs.events("j", grown)) == 7


def test_items_that_are_not_the_same_objects_are_parsed_afresh(parses: list[int]) -> None:
    logs = ParsedLogs()
    logs.events("j", [item(s) for s in range(1, 4)])
    reloaded = [item(s) | {"result": "other"} for s in range(1, 4)]  # the store's cache was rebuilt
    events = logs.events("j", reloaded)

    assert parses == [1, 2, 3, 1, 2, 3]
    assert [e.result for e in events] == ["other"] * 3


def test_bounded_by_events_least_recent_job_first(parses: list[int]) -> None:
    logs = ParsedLogs(max_events=5)
    a = [item(s) for s in range(1, 4)]
    b = [item(s) for s in range(1, 4)]
    logs.events("a", a)
    logs.events("b", b)  # 6 > 5: a's are dropped
    logs.events("a", a)
    assert parses == [1, 2, 3, 1, 2, 3, 1, 2, 3]
