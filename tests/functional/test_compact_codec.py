"""The segment format (``_store/segments.py``) gives back exactly the slot items it was given, so a
History built from segments equals one built from the events — over odd values: non-ASCII text,
ints past 64 bits, nested maps and lists, floats (finite), attributes only some events have. And
the byte-bounded event cache (``_store/event_cache.py``) keeps to its bound."""

from __future__ import annotations

import json
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aetheris._store import schema
from aetheris._store.event_cache import EventCache, approx_bytes
from aetheris._store.segments import Unencodable, decode, encode
from aetheris.events import Event, EventType

JOB = "job-ü-1"
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)  # DynamoDB strings are UTF-8
SCALARS = st.one_of(
    TEXT,
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
)
NESTED = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
)
TYPES = st.sampled_from([EventType.STEP_COMMITTED, EventType.STEP_FAILED, EventType.SIGNAL_CONSUMED])


def slot(seq: int, state: str = "COMMITTED") -> dict[str, Any]:
    return {schema.PK: JOB, schema.SK: schema.event_sk(seq), "job_id": JOB, "seq": seq, "state": state}


@st.composite
def slot_items(draw: st.DrawFn) -> list[dict[str, Any]]:
    first = draw(st.integers(min_value=0, max_value=10**6))
    count = draw(st.integers(min_value=1, max_value=12))
    items = []
    for seq in range(first, first + count):
        item: dict[str, Any] = {
            schema.PK: JOB,
            schema.SK: schema.event_sk(seq),
            "job_id": JOB,
            "seq": seq,
            "state": "COMMITTED",
            "type": draw(TYPES).value,
            "at": f"2026-12-01T10:{seq % 60:02d}:00.{draw(st.integers(0, 999999)):06d}+00:00",
            "fence": draw(st.integers(min_value=1, max_value=2**40)),
            "attempt": draw(st.integers(min_value=0, max_value=9)),
            "worker_id": draw(TEXT),
            "claimed_at": draw(st.integers(min_value=0, max_value=2**62)),
        }
        if draw(st.booleans()):
            item["result"] = draw(TEXT)  # stored JSON text, or an offloaded value's reference
        if draw(st.booleans()):
            item["name"] = draw(TEXT)
        extra = draw(st.dictionaries(st.sampled_from(["odd", "nested", "released"]), NESTED, max_size=3))
        items.append({**item, **extra})
    return items


@settings(max_examples=150, deadline=None)
@given(slot_items())
def test_compact_codec_gives_back_the_items_and_the_same_history(items: list[dict[str, Any]]) -> None:
    decoded = decode(JOB, encode(items))

    assert decoded == items
    assert [Event.from_item(i) for i in decoded] == [Event.from_item(i) for i in items]


def test_compact_codec_keeps_int_float_and_bool_apart() -> None:
    items = [{**slot(s), "v": v} for s, v in enumerate([1, 1.0, True, 2**70, -0.5])]
    decoded = decode(JOB, encode(items))

    assert [type(i["v"]) for i in decoded] == [int, float, bool, int, float]
    assert [i["v"] for i in decoded] == [1, 1.0, True, 2**70, -0.5]
    ints_and_a_bool = [{**slot(s), "v": v} for s, v in enumerate([1, True, 2])]  # a delta column?
    assert [type(i["v"]) for i in decode(JOB, encode(ints_and_a_bool))] == [int, bool, int]


@pytest.mark.parametrize("odd", [b"bytes", float("nan"), {1: "int key"}, {"a", "set"}])
def test_compact_codec_refuses_what_it_cannot_give_back_exactly(odd: Any) -> None:
    with pytest.raises(Unencodable):
        encode([{**slot(0), "odd": odd}])


def test_compact_codec_refuses_a_run_with_a_gap_or_an_open_claim() -> None:
    with pytest.raises(Unencodable):
        encode([slot(0), slot(2)])
    with pytest.raises(Unencodable):
        encode([slot(0), slot(1, "CLAIMED")])


def test_compact_decode_of_damaged_bytes_raises_value_error() -> None:
    blob = encode(
        [{schema.PK: JOB, schema.SK: schema.event_sk(0), "job_id": JOB, "seq": 0, "state": "COMMITTED"}]
    )
    with pytest.raises(ValueError):
        decode(JOB, blob[:-3])


def events(job: str, count: int, result_bytes: int = 10) -> list[dict[str, Any]]:
    return [{"job_id": job, "seq": s, "result": "x" * result_bytes} for s in range(count)]


def test_compact_cache_keeps_to_its_byte_bound_least_recently_used_out() -> None:
    one_job = sum(approx_bytes(e) for e in events("a", 100))
    cache = EventCache(max_bytes=int(one_job * 2.5))
    cache.extend("a", events("a", 100))
    cache.extend("b", events("b", 100))
    cache.get("a")  # a read is not a use: loads extend
    cache.extend("a", [{"job_id": "a", "seq": 100, "result": "x"}])  # a is now the most recent
    cache.extend("c", events("c", 100))

    assert "b" not in cache and "a" in cache and "c" in cache
    assert cache.bytes <= cache.max_bytes
    assert len(cache.get("a")) == 101


def test_compact_cache_does_not_keep_a_job_whose_log_alone_is_over_the_bound() -> None:
    cache = EventCache(max_bytes=50_000)
    cache.extend("small", events("small", 10))
    cache.extend("huge", events("huge", 100, result_bytes=1000))

    assert "huge" not in cache and cache.get("huge") == []
    assert "small" in cache, "a job too big to keep evicts nobody"
    assert cache.bytes == sum(approx_bytes(e) for e in events("small", 10))
    assert cache.append("huge", {"job_id": "huge", "seq": 100}) is False


def test_compact_cache_counts_a_job_once_when_replaced_and_after_forget() -> None:
    cache = EventCache(max_bytes=10**6)
    cache.extend("a", events("a", 10))
    cache.extend("a", events("a", 10), replace=True)
    assert cache.bytes == sum(approx_bytes(e) for e in events("a", 10))
    cache.forget("a")
    assert cache.bytes == 0 and cache.get("a") == []


@pytest.mark.parametrize(
    "doc",
    [
        {"f": 1, "n": 1, "c": ["not", "a", "map"]},
        {"f": 1, "n": 1, "c": {"seq": {"v": [0]}, "odd": {"at": [5], "v": ["past the rows"]}}},
        {"f": 1, "n": 2, "c": {"seq": {"v": [0, 1]}, "odd": {"at": [-1], "v": ["before the rows"]}}},
        {"f": 1, "n": 1, "c": {"type": {"v": ["StepCommitted"]}}},  # no seq column
        {"f": 1, "n": 1, "c": {"seq": {"v": ["0"]}}},  # a seq that is no int
        {"f": 1, "n": "one", "c": {}},
    ],
)
def test_compact_decode_of_a_malformed_segment_raises_value_error(doc: dict[str, Any]) -> None:
    # Well-formed bytes around a wrong document: still a segment the chain skips, never a crash.
    blob = zlib.compress(json.dumps(doc).encode("utf-8"))
    with pytest.raises(ValueError):
        decode(JOB, blob)
