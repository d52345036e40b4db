"""Idempotent starts: an idempotency key names one job for as long as that job is retained.

A key's job id is derived from the key and a *generation*: generation 0 is ``uuid5(key)`` (the id
every key got before generations existed), generation g > 0 an id of its own. A start reads what
lives at the key's current id and classifies it:

* ``LIVE`` — a job item that has not passed its ``expires_at``: the same job (a repeat start);
* ``EMPTY`` — nothing at all under that id: the job is created there;
* ``DEAD`` — the job's retention has passed (``expires_at`` ≤ now) or DynamoDB's TTL is part-way
  through deleting it (the job item gone, some events or ledger entries left; or the job item left
  and slot 0 gone): a fresh job is started at generation g + 1.

A dead job's id is not reused while anything of it is left: the new job's items, inbox signals,
payload objects and — most of all — its tool calls' idempotency keys (``job_id:step:tool:n``, passed
to downstream APIs) would meet the old job's leftovers. (A key whose generation-0 job TTL removed
entirely, with no record, starts generation 0 again: by then, a retention period after the job
ended, nothing of it is left to meet, and downstream keys have long expired.)

So a key's *generation record* (``pk = "IK#" + sha256(key)``) keeps the generation in use. It is
written in the same transaction as the job it points at, only when a generation past 0 is started
(a key never reused after its retention costs nothing extra), on condition that the generation is
still the one that was read: of two racing starts one creates the job and the other, re-reading,
finds it ``LIVE``. Without the record, a generation whose items TTL had fully deleted would read
``EMPTY`` while a later one lived, and a third start would fork the key.

The record carries a provisional TTL like every item of the job it is written with
(``retention.py``), and the job's retention extensions extend it too (``record_pk_of``): it lives as
long as the generation it points at, and goes a horizon after it at most.
Rejected: deleting the dead job's leftovers and re-creating in place (conditional deletes racing
TTL, and the reused tool keys above), and refusing the start until TTL is done (days of 409s).
"""

from __future__ import annotations

import enum
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aetheris._store import schema
from aetheris._store.conditions import absent, equals
from aetheris._store.dynamo import Item, Table, to_dynamo
from aetheris._store.lifetime import Lifetime
from aetheris._tenancy import TENANT_ATTRIBUTE, scoped_key
from aetheris.errors import AetherisError

# Ids of generation 0: unchanged from before generations, so keys already used find their jobs.
KEY_NAMESPACE = uuid.UUID("6f1c2a47-5d0e-4a8e-9f4b-3a2d1e0c9b71")
# Ids of later generations: a namespace of their own, so no key's generation 0 is another's g > 0.
GENERATION_NAMESPACE = uuid.UUID("0b6d5f8e-2c4a-4e1b-9a7d-5e3f1c8b2d40")
RECORD_PREFIX = "IK#"
RECORD_SK = schema.RECORD_SK


class KeyContended(AetherisError):
    """Starts with this key kept racing each other; none of this one's attempts settled it."""

    def __init__(self, idempotency_key: str, attempts: int) -> None:
        self.idempotency_key, self.attempts = idempotency_key, attempts
        super().__init__(
            f"idempotency key {idempotency_key!r}: {attempts} concurrent starts kept moving it; "
            f"start again with the same key to get its job"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.idempotency_key, self.attempts))


class Occupant(enum.StrEnum):
    EMPTY = "EMPTY"
    LIVE = "LIVE"
    DEAD = "DEAD"


def retained(job: Item, now: datetime) -> bool:
    """Is the job item still within its retention (no ``expires_at``, or one still ahead)?"""
    expires = job.get(schema.TTL_ATTRIBUTE)
    return expires is None or int(expires) > int(now.timestamp())


def record_pk(key: str) -> str:
    """The generation record's key for a (tenant-scoped) idempotency key."""
    return RECORD_PREFIX + hashlib.sha256(key.encode()).hexdigest()


def record_pk_of(job: Item) -> str | None:
    """The generation record a job item's idempotency key may have (``None``: started without one)."""
    key = job.get("idempotency_key")
    if not key:
        return None
    return record_pk(scoped_key(str(key), job.get(TENANT_ATTRIBUTE)))


def job_id_for(key: str, generation: int) -> str:
    if generation == 0:
        return str(uuid.uuid5(KEY_NAMESPACE, key))
    return str(uuid.uuid5(GENERATION_NAMESPACE, f"{generation}:{key}"))


@dataclass(frozen=True)
class KeySlot:
    """Where a start with this key lands: the job there (if ``LIVE``) or the id to create it at."""

    job_id: str
    occupant: Occupant
    job: Item | None
    # The conditional write of the generation record that must go with the create ([] at gen 0).
    claim: list[dict[str, Any]]


class IdempotencyKeys:
    def __init__(self, table: Table, lifetime: Lifetime | None = None) -> None:
        self.table = table
        self.lifetime = lifetime or Lifetime()

    def slot(self, key: str, now: datetime) -> KeySlot:
        """The key's current job if it lives, else the id a new job for the key must take."""
        record = self.table.get(record_pk(key), RECORD_SK)
        generation = int(record["generation"]) if record else 0
        job_id = job_id_for(key, generation)
        occupant, job = self.occupant(job_id, now)
        if occupant is Occupant.LIVE:
            return KeySlot(job_id, occupant, job, [])
        if occupant is Occupant.EMPTY and record is None:
            return KeySlot(job_id, occupant, None, [])  # a key's first job: no record needed
        # Dead, or the recorded generation is fully deleted: that id was used; take the next one.
        nxt = generation + 1
        # The generation moves only from the one read: a racing start that moved it first wins.
        unchanged = absent(schema.PK) if record is None else equals("generation", generation)
        record_item = {
            schema.PK: record_pk(key),
            schema.SK: RECORD_SK,
            "generation": nxt,
            "idempotency_key": key,
            # The same provisional TTL as the job it is created with (its floor covers it).
            schema.TTL_ATTRIBUTE: self.lifetime.provisional(now),
        }
        claim = [{"Put": self.table.put_request(record_item, unchanged)}]
        return KeySlot(job_id_for(key, nxt), Occupant.EMPTY, None, claim)

    def occupant(self, job_id: str, now: datetime) -> tuple[Occupant, Item | None]:
        """What lives under ``job_id``: a retained job, a dead (expired, half-deleted) one, or nothing."""
        job = self.table.get(job_id, schema.JOB_SK)
        if job is not None:
            return (Occupant.LIVE if retained(job, now) else Occupant.DEAD), job
        # No job item: any other item left under the id is a job TTL is deleting (a live job always
        # has its job item: it is written with slot 0 and only TTL removes it).
        left = self.table.client.query(
            TableName=self.table.name,
            KeyConditionExpression="pk = :job",
            ExpressionAttributeValues=to_dynamo({":job": job_id}),
            ProjectionExpression="pk",
            Limit=1,
            ConsistentRead=True,
        )
        return (Occupant.DEAD if left.get("Items") else Occupant.EMPTY), None
