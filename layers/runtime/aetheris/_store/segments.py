"""Log segments: a compact, compressed copy of a run of committed events, for cold reads.

A committed event never changes, so once a run of ``SEGMENT_EVENTS`` events exists, the worker that
committed its last one reads them back as stored and writes (best-effort) a *segment* item holding
them all, columnar and zlib-compressed (about 20 bytes per event against ~370 for the event item). A
worker that has not seen the job reads the segments and only the events after the last one.

Segments are derived data: the ``EV#<seq>`` slots stay the log's source of truth and are never
touched here. So a segment is used only when it checks out against what it claims and against the
log: it decodes, covers exactly ``first..last`` with contiguous seqs, belongs to this job's
incarnation (``job_at`` = the job's ``created_at``), continues the chain from seq 0, and the last
event it holds equals the stored ``EV#<last>`` (the tail read starts there, so this costs one item).
Anything off — missing, truncated, from an earlier job under the id — and the loader reads those
events themselves instead (see ``JobStore.load``); a cold load also writes (a few of) the segments
it found missing.

Segment items sort under ``ES#`` (``schema.py``): outside the ``EV#n .. EW#JOB`` range a warm load
reads, so only cold loads ever read them. Their TTL is the provisional one of their write (never
below the job's floor), so they expire with the job, and the retention extension raises them like
every other item of the job. The events' own TTLs are not kept in them (``OMITTED``).
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass
from itertools import accumulate, pairwise, repeat
from typing import Any

from aetheris._store import schema
from aetheris._store.dynamo import Item, Table, to_dynamo
from aetheris.events import SlotState

# Events per segment: the tail a cold load reads raw is shorter than this, each segment a few KB.
SEGMENT_EVENTS = 100
# A segment must fit in one item (400 KB) with room to spare; a run of huge results is not compacted.
MAX_SEGMENT_BYTES = 300 * 1024
FORMAT = 1
_IMPLIED = ("pk", "sk", "job_id", "state")  # rebuilt from the job id and each event's seq
# Not part of the event: the slot's TTL, which the retention extension raises after the commit.
OMITTED = (schema.TTL_ATTRIBUTE,)


# ``schema.event_sk`` as a bound format, mapped over a segment's seqs.
_EVENT_SK = f"{schema.EVENT_PREFIX}{{:0{schema.SEQ_DIGITS}d}}".format


class Unencodable(Exception):
    """An event holds a value the segment format cannot carry exactly (the run stays uncompacted)."""


@dataclass(frozen=True)
class Segment:
    first: int
    last: int
    events: list[Item]


def encode(events: list[Item]) -> bytes:
    """The events' compressed columnar form; raises ``Unencodable`` rather than lose anything."""
    if not events:
        raise Unencodable("no events")
    job_id = events[0]["job_id"]
    first = int(events[0]["seq"])
    if [int(e["seq"]) for e in events] != list(range(first, first + len(events))):
        raise Unencodable("the events are not a contiguous run")
    rows = []
    for item in events:
        implied = _implied(job_id, int(item["seq"]))
        if any(item.get(k) != v for k, v in implied.items()):
            raise Unencodable(f"event {item.get('seq')} is not a stored committed slot of {job_id}")
        rows.append({k: v for k, v in item.items() if k not in implied and k not in OMITTED})
    columns: dict[str, Any] = {}
    for key in sorted({k for row in rows for k in row}):
        present = [row[key] for row in rows if key in row]
        for value in present:
            _check(value)
        column: dict[str, Any] = {}
        if len(present) != len(rows):
            column["at"] = [i for i, row in enumerate(rows) if key in row]
        if all(type(v) is int for v in present):
            # Seqs, fences, ops, timestamps in ms: small deltas compress far better than the values.
            column["d"] = [present[0], *(b - a for a, b in pairwise(present))]
        else:
            column["v"] = present
        columns[key] = column
    doc = {"f": FORMAT, "n": len(rows), "c": columns}
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return zlib.compress(text.encode("utf-8"), 9)


def decode(job_id: str, blob: bytes) -> list[Item]:
    """The event items ``encode`` was given (raises ``ValueError`` on anything malformed).

    Column by column, with the rows zipped together at C speed: a cold load at step 10,000
    decodes 100 segments, and a per-cell Python loop was most of that."""
    try:
        doc = json.loads(zlib.decompress(blob).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError) as bad:
        raise ValueError(f"unreadable segment: {bad}") from None
    if not isinstance(doc, dict) or doc.get("f") != FORMAT:
        raise ValueError("unknown segment format")
    try:
        return _rows(job_id, int(doc["n"]), doc["c"])
    except (AttributeError, IndexError, KeyError, TypeError) as bad:
        raise ValueError(f"malformed segment: {bad!r}") from None


def _rows(job_id: str, count: int, columns: dict[str, Any]) -> list[Item]:
    dense: dict[str, list[Any]] = {}  # the columns every event has, most of them
    sparse: list[tuple[str, list[int], list[Any]]] = []
    for key, column in columns.items():
        values = list(accumulate(column["d"])) if "d" in column else column["v"]
        positions = column.get("at")
        if len(values) != (count if positions is None else len(positions)):
            raise ValueError(f"column {key!r} is truncated")
        if positions is None:
            dense[key] = values
        else:
            sparse.append((key, positions, values))
    if not count:
        return []
    sks = map(_EVENT_SK, dense["seq"])  # no seq in every row: KeyError; a seq not an int: ValueError
    state = SlotState.COMMITTED.value
    keys = ("pk", "sk", "job_id", "state", *dense)
    cells = zip(repeat(job_id), sks, repeat(job_id), repeat(state), *dense.values(), strict=False)
    rows: list[Item] = list(map(dict, map(zip, repeat(keys), cells)))
    for key, positions, values in sparse:
        for position, value in zip(positions, values, strict=True):
            if position < 0:
                raise IndexError(position)
            rows[position][key] = value
    return rows


def _implied(job_id: str, seq: int) -> dict[str, Any]:
    return {"pk": job_id, "sk": schema.event_sk(seq), "job_id": job_id, "state": SlotState.COMMITTED.value}


def _check(value: Any) -> None:
    """Only what JSON gives back identically: str, bool, int, finite float, lists and str-keyed maps."""
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Unencodable("a non-finite float")
        return
    if isinstance(value, list):
        for element in value:
            _check(element)
        return
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        for element in value.values():
            _check(element)
        return
    raise Unencodable(f"a {type(value).__name__} value")


class SegmentStore:
    def __init__(self, table: Table) -> None:
        self.table = table

    def write(self, job_at: str, events: list[Item], expires_at: int) -> bool:
        """Write the segment of ``events`` (contiguous, committed; ``job_at``: their job's
        ``created_at``); ``False`` if it cannot be encoded or is too big (the events are read instead).

        A plain put: whoever writes a run's segment writes the same content (committed events never
        change), so a second write, a zombie's or a backfill's, only replaces it with itself — or
        mends one that went bad. A conditional put would cost the same write units when it loses.
        """
        try:
            blob = encode(events)
        except Unencodable:
            return False
        if len(blob) > MAX_SEGMENT_BYTES:
            return False
        first, last = int(events[0]["seq"]), int(events[-1]["seq"])
        job_id = str(events[0]["job_id"])
        item = {
            schema.PK: job_id,
            schema.SK: schema.segment_sk(first),
            "first": first,
            "last": last,
            "count": len(events),
            "job_at": job_at,
            "data": blob,
            schema.TTL_ATTRIBUTE: expires_at,
        }
        self.table.put(item)
        return True

    def stored_run(self, job_id: str, first: int, last: int) -> list[Item] | None:
        """The slots ``first..last`` as stored (an eventually consistent read, half the price),
        if they are all there and committed; else ``None`` (a cold read writes the segment later)."""
        items = self.table.query(
            KeyConditionExpression="pk = :job AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues=to_dynamo(
                {":job": job_id, ":first": schema.event_sk(first), ":last": schema.event_sk(last)}
            ),
            ConsistentRead=False,
        )
        committed = [i for i in items if i.get("state") == SlotState.COMMITTED.value]
        return committed if len(committed) == last - first + 1 else None

    def read_chain(self, job_id: str, job_at: str) -> list[Segment]:
        """The segments of this incarnation of the job (``job_at``: its ``created_at``) that chain
        from seq 0 without a gap, decoded; the chain stops at the first gap or bad segment."""
        items = self.table.query(
            KeyConditionExpression="pk = :job AND begins_with(sk, :segments)",
            ExpressionAttributeValues=to_dynamo({":job": job_id, ":segments": schema.SEGMENT_PREFIX}),
            # Eventually consistent, half the price: a segment missed is read as events instead.
            ConsistentRead=False,
        )
        chain: list[Segment] = []
        expected = 0
        for item in items:  # in sort-key order: by first seq
            if item.get("job_at") != job_at or int(item.get("first", -1)) < expected:
                continue  # an earlier job's under the same id, or overlapping what the chain has
            segment = _checked(job_id, item, expected)
            if segment is None:
                break
            chain.append(segment)
            expected = segment.last + 1
        return chain


def _checked(job_id: str, item: Item, expected: int) -> Segment | None:
    try:
        first, last = int(item["first"]), int(item["last"])
        if first != expected or item[schema.SK] != schema.segment_sk(first):
            return None
        data = item["data"]  # boto3's Binary, or bytes
        blob: bytes = data.value if hasattr(data, "value") else bytes(data)
        events = decode(job_id, blob)
    except (KeyError, TypeError, ValueError):
        return None
    seqs = [int(e["seq"]) for e in events]
    if seqs != list(range(first, last + 1)) or int(item.get("count", -1)) != len(events):
        return None
    return Segment(first, last, events)
