"""``Event.from_item``: a cold tick at step 10,000 parses 10,000 stored events, so it validates the
item as stored (no per-key field lookup, no deep copy of mutable defaults) — and must give exactly
what validating the item's event fields gave: the same values, the same fields set, fresh lists and
maps for every event, the same JSON schema for the API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aetheris._engine.parsed_log import parse_events
from aetheris.errors import ErrorInfo
from aetheris.events import Event
from aetheris.handlers.api_models import EventView

SLOT = {"pk": "j", "sk": "EV#0000000003", "state": "COMMITTED", "claimed_at": 17, "grant_token": "t"}
BASE = {
    "job_id": "j",
    "seq": 3,
    "type": "StepCommitted",
    "at": "2026-12-01T09:00:00.123456+00:00",
    "fence": 2,
    "attempt": 1,
    "worker_id": "w",
}
ITEMS = [
    {**SLOT, **BASE, "op": 2, "op_kind": "step", "name": "s", "result": "2", "duration_ms": 4},
    {**SLOT, **BASE, "values": json.dumps([{"kind": "now", "value": "x"}]), "detail": '{"a": [1]}'},
    {
        **BASE,
        "type": "StepFailed",
        "error": ErrorInfo(type="E", message="m", args=[1]).model_dump_json(),
        "next_attempt_at": "2026-12-01T09:00:01+00:00",
        "values": [{"kind": "uuid", "value": "u"}],
        "detail": {"warnings": ["w"]},
    },
    {**BASE, "input": None, "branch": None, "started_at": None, "reclaimed_from": "w0"},
]


def as_validated_before(item: dict[str, Any]) -> Event:
    """What ``from_item`` did: the event fields only, JSON texts decoded, then validation."""
    data = {k: v for k, v in item.items() if k in Event.model_fields}
    if isinstance(item.get("error"), str):
        data["error"] = ErrorInfo.model_validate_json(item["error"])
    for field in ("values", "detail"):
        if isinstance(item.get(field), str):
            data[field] = json.loads(item[field])
    return Event.model_validate(data)


@pytest.mark.parametrize("item", ITEMS)
def test_event_from_item_gives_what_validating_its_fields_gave(item: dict[str, Any]) -> None:
    parsed, before = Event.from_item(item), as_validated_before(item)

    assert parsed == before
    assert parsed.model_fields_set == before.model_fields_set
    assert parsed.model_dump_json() == before.model_dump_json()
    assert type(parsed.at.tzinfo) is type(before.at.tzinfo)


def test_event_from_item_gives_every_event_lists_and_maps_of_its_own() -> None:
    first, second = Event.from_item(ITEMS[0]), Event.from_item(ITEMS[0])
    stored = Event.from_item(ITEMS[2])

    assert first.values == [] and first.detail == {}
    assert first.values is not second.values and first.detail is not second.detail
    assert stored.values is not ITEMS[2]["values"] and stored.detail is not ITEMS[2]["detail"]
    assert ITEMS[2]["values"] == [{"kind": "uuid", "value": "u"}]  # the stored item is not touched


def test_event_from_item_refuses_what_it_refused() -> None:
    with pytest.raises(ValueError):
        Event.from_item({**BASE, "seq": "not a number"})
    with pytest.raises(ValueError):
        Event.from_item({k: v for k, v in BASE.items() if k != "at"})


def test_event_schema_still_shows_the_defaults_of_values_and_detail() -> None:
    for model in (Event, EventView):
        properties = model.model_json_schema()["properties"]
        assert properties["values"]["default"] == []
        assert properties["detail"]["default"] == {}
        assert "values" not in model.model_json_schema().get("required", [])


def test_event_view_from_item_is_still_built_as_the_view() -> None:
    view = EventView.from_item(ITEMS[0])

    assert isinstance(view, EventView) and view.result == "2"


def test_a_log_parsed_at_once_equals_its_events_parsed_one_by_one() -> None:
    log = [*ITEMS, *ITEMS[:1], {**ITEMS[0], "seq": 9, "values": []}]
    at_once, one_by_one = parse_events(log), [Event.from_item(item) for item in log]

    assert at_once == one_by_one
    assert [e.model_fields_set for e in at_once] == [e.model_fields_set for e in one_by_one]
    assert all(type(e) is Event for e in at_once)
    with pytest.raises(ValueError):
        parse_events([ITEMS[0], {**BASE, "seq": "not a number"}])
