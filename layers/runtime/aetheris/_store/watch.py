"""The attention index: when each job next needs a look, on the sparse, write-sharded ``by-due`` GSI.

A job item carries ``due_shard`` / ``due_at`` (epoch milliseconds) while something about it must be
checked at ``due_at`` if nothing else happened first:

    PENDING, RUNNING, COMPENSATING   its progress deadline: when its next tick is due + stall_after
    SLEEPING, WAITING with timeout   the timer's fire time, the wait's deadline
    WAITING for a signal, no timeout nothing: not on the index (the signal wakes it)
    COMPLETED, FAILED, CANCELLED     nothing; a job from before provisional TTLs: its retention pass,
                                     until the pass is done (``retention.py``)

A live job is also due, at the latest, when its items' TTLs need extending (``cap``: the job's
``Lifetime.extension_due``, half a horizon before its floor): so a job parked on a signal for longer
than the retention horizon is found by the sweeper in time (``retention.py``).

``due_shard`` is ``"<n>"`` for ``n = crc32(job_id) % shards``, so the index's writes spread over
``shards`` partition keys (a million RUNNING jobs never share one); the sweeper reads each shard for
``due_at <= now``. A healthy job is never due: its worker refreshes the deadline when it is getting
stale (``refresh_if_stale``), at most once per ``stall_after / 2`` and never on every step.

This module is pure key-building plus the three reads the sweeper and the operator views make:
the due entries of a shard, a job's *tail* (job item, open claim, last committed event: one
Query), and the conditional writes that move or drop an entry.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aetheris._clock import to_millis
from aetheris._store import schema
from aetheris._store.conditions import equals, present
from aetheris._store.dynamo import ConditionFailed, Item, Table, from_dynamo, to_dynamo
from aetheris._store.jobs import CLAIMED, COMMITTED
from aetheris.events import JobStatus

RUNNABLE = frozenset({JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPENSATING})
PARKED = frozenset({JobStatus.WAITING, JobStatus.SLEEPING})
# Written by the sweeper when it sends a rescue tick: when, and how many in this episode.
SWEPT_AT = "swept_at"
SWEEPS = "sweeps"
KEYS = (schema.DUE_INDEX_PK, schema.DUE_INDEX_SK)


def shard_of(job_id: str, shards: int) -> str:
    """The job's index partition: stable across processes and releases (crc32, not ``hash()``)."""
    return str(zlib.crc32(job_id.encode()) % shards)


def look_at(job_id: str, at: datetime | None, shards: int) -> dict[str, Any]:
    """Job-item attributes for "needs a look at ``at``"; ``None`` values (``at`` is None) mean remove."""
    if at is None:
        return {schema.DUE_INDEX_PK: None, schema.DUE_INDEX_SK: None}
    return {schema.DUE_INDEX_PK: shard_of(job_id, shards), schema.DUE_INDEX_SK: to_millis(at)}


def next_look(
    status: JobStatus,
    now: datetime,
    stall_after: timedelta,
    *,
    parked_due: datetime | None = None,
    next_tick_at: datetime | None = None,
    cap: datetime | None = None,
    retention_pass: bool = False,
) -> datetime | None:
    """When a job in ``status`` needs its next look, as of a commit at ``now``.

    ``next_tick_at`` is when a runnable job's next tick is due (a retry's backoff; default now),
    ``parked_due`` a parked job's timer or wait deadline, ``cap`` the latest look a live job may
    have (its retention extension). A finished job is looked at only if its old retention pass is
    to run (``retention_pass``), once it should have; a wait without a deadline at ``cap``.
    """
    if status.is_terminal:
        return now + stall_after if retention_pass else None
    if status in PARKED:
        return earliest(parked_due, cap)
    return earliest(max(now, next_tick_at or now) + stall_after, cap)


def earliest(at: datetime | None, cap: datetime | None) -> datetime | None:
    """The earlier of two looks (``None``: no look)."""
    if at is None or cap is None:
        return at or cap
    return min(at, cap)


def attention(
    job_id: str,
    status: JobStatus,
    now: datetime,
    stall_after: timedelta,
    shards: int,
    *,
    parked_due: datetime | None = None,
    next_tick_at: datetime | None = None,
    cap: datetime | None = None,
    retention_pass: bool = False,
) -> dict[str, Any]:
    """What a commit that sets ``status`` writes on the job item (``None`` values: remove them)."""
    at = next_look(
        status,
        now,
        stall_after,
        parked_due=parked_due,
        next_tick_at=next_tick_at,
        cap=cap,
        retention_pass=retention_pass,
    )
    return look_at(job_id, at, shards)


def refresh_if_stale(
    job: Item,
    now: datetime,
    stall_after: timedelta,
    shards: int,
    next_tick_at: datetime | None = None,
    cap: datetime | None = None,
) -> dict[str, Any] | None:
    """For a commit that leaves a runnable job's status alone: the new deadline, if the one the job
    item holds has less than half of ``stall_after`` left past the next tick (and is not the
    ``cap`` already); else ``None``.

    So a job that steps continuously writes its job item once per ``stall_after / 2`` at most.
    """
    if JobStatus(job["status"]) not in RUNNABLE:
        return None
    base = max(now, next_tick_at or now)
    current = job.get(schema.DUE_INDEX_SK)
    enough = earliest(base + stall_after / 2, cap)
    assert enough is not None
    within_cap = cap is None or (current is not None and int(current) <= to_millis(cap))
    if current is not None and int(current) >= to_millis(enough) and within_cap:
        return None
    return look_at(str(job[schema.PK]), earliest(base + stall_after, cap), shards)


def refresh(table: Table, job_id: str, attributes: dict[str, Any]) -> None:
    """Write a refreshed deadline; a job item gone meanwhile (TTL) is left gone."""
    with suppress(ConditionFailed):
        table.update(job_id, schema.JOB_SK, attributes, present(schema.PK))


# -- the sweeper's reads and writes ------------------------------------------------------------


@dataclass(frozen=True)
class Entry:
    job_id: str
    due_at_ms: int


@dataclass(frozen=True)
class Tail:
    """A job as one consistent Query sees its end: the job item, an open claim, the last event."""

    job: Item
    last: Item | None  # the last committed event
    claim: Item | None  # the claim on the slot after it, if any (a released one has lease_until 0)

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.job["status"])

    @property
    def due_at_ms(self) -> int | None:
        value = self.job.get(schema.DUE_INDEX_SK)
        return None if value is None else int(value)

    @property
    def next_seq(self) -> int:
        return int(self.last["seq"]) + 1 if self.last is not None else 0


def due_entries(table: Table, shard: str, now: datetime, limit: int) -> Iterator[Entry]:
    """Entries of ``shard`` due by ``now``, oldest first, at most ``limit`` (pages followed)."""
    request: dict[str, Any] = {
        "TableName": table.name,
        "IndexName": schema.DUE_INDEX,
        "KeyConditionExpression": "#shard = :shard AND #due <= :now",
        "ExpressionAttributeNames": {"#shard": schema.DUE_INDEX_PK, "#due": schema.DUE_INDEX_SK},
        "ExpressionAttributeValues": to_dynamo({":shard": shard, ":now": to_millis(now)}),
    }
    left = limit
    while left > 0:
        response = table.client.query(**request, Limit=left)
        for raw in response.get("Items", []):
            item = from_dynamo(raw) or {}
            left -= 1
            yield Entry(str(item[schema.PK]), int(item[schema.DUE_INDEX_SK]))
        last = response.get("LastEvaluatedKey")
        if not last:
            return
        request["ExclusiveStartKey"] = last


def read_tail(table: Table, job_id: str) -> Tail | None:
    """The job item, the open claim and the last committed event: one consistent Query of 3 items.

    Slots sort before the job item (``schema.py``), so reading backwards from it gives the job
    item, then the newest slot (an open claim, or the last event), then the one before.
    """
    items = table.client.query(
        TableName=table.name,
        KeyConditionExpression="pk = :job AND sk BETWEEN :first AND :job_item",
        ExpressionAttributeValues=to_dynamo(
            {":job": job_id, ":first": schema.event_sk(0), ":job_item": schema.JOB_SK}
        ),
        ScanIndexForward=False,
        Limit=3,
        ConsistentRead=True,
    ).get("Items", [])
    found = [item for item in map(from_dynamo, items) if item]
    if not found or found[0][schema.SK] != schema.JOB_SK:
        return None
    slots = found[1:]
    claim = slots[0] if slots and slots[0].get("state") == CLAIMED else None
    last = next((s for s in slots if s.get("state") == COMMITTED), None)
    return Tail(job=found[0], last=last, claim=claim)


def move(table: Table, tail: Tail, at: datetime | None, shards: int) -> bool:
    """Move the job's entry to ``at`` (``None``: off the index) and forget past rescues — only if
    nobody moved it since ``tail`` was read. ``False`` if someone did."""
    job_id = str(tail.job[schema.PK])
    attributes = look_at(job_id, at, shards)
    remove = (*(k for k, v in attributes.items() if v is None), SWEPT_AT, SWEEPS)
    return _unless_moved(table, tail, {k: v for k, v in attributes.items() if v is not None}, remove)


def mark_swept(table: Table, tail: Tail, now: datetime, sweeps: int) -> bool:
    """Record a rescue tick (the entry stays due, so the job stays visible as stuck)."""
    return _unless_moved(table, tail, {SWEPT_AT: to_millis(now), SWEEPS: sweeps}, ())


def _unless_moved(table: Table, tail: Tail, values: dict[str, Any], remove: tuple[str, ...]) -> bool:
    # The entry is still where the sweeper saw it: no commit, refresh or cancel has moved it since.
    unmoved = equals(schema.DUE_INDEX_SK, tail.due_at_ms)
    try:
        if values:
            table.update(str(tail.job[schema.PK]), schema.JOB_SK, values, unmoved, remove=remove)
        else:
            _remove_only(table, str(tail.job[schema.PK]), remove, unmoved)
    except ConditionFailed:
        return False
    return True


def _remove_only(table: Table, job_id: str, remove: tuple[str, ...], condition: Any) -> None:
    names = {f"#r{i}": attribute for i, attribute in enumerate(remove)} | dict(condition.names)
    try:
        table.client.update_item(
            TableName=table.name,
            Key=table.key(job_id, schema.JOB_SK),
            UpdateExpression="REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove))),
            ConditionExpression=condition.expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=to_dynamo(dict(condition.values)),
        )
    except table.client.exceptions.ConditionalCheckFailedException:
        raise ConditionFailed(None) from None
