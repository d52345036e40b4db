"""A cold read of a job's log: what a worker that has not seen the job reads (``JobStore.load``).

One Query probes the log's start (``PROBE_ITEMS`` slots): a short log — most jobs — is read whole by
it, as before segments. A longer one goes on with the log's segments (``segments.py``, one
eventually consistent Query), then the events from the segments' last one on, which must equal
what the segments hold of it; if it does not, or the segments do not reach past the probe, the
events themselves are read. ``covered`` tells the caller how many events, from seq 0, the segments
it read (or checked) hold, so that it can write the missing ones.
"""

from __future__ import annotations

from typing import Any

from aetheris import _log_context
from aetheris._store import schema
from aetheris._store.dynamo import Item, Table, from_dynamo, to_dynamo
from aetheris._store.segments import OMITTED, SegmentStore
from aetheris.events import SlotState

# A log this short is read whole by the probe (one request); a longer one goes on from its
# segments, which replace the probe's items (~6 KB read twice).
PROBE_ITEMS = 16
COMMITTED = SlotState.COMMITTED

log = _log_context.logger("aetheris.store")


def log_request(job_id: str, seq: int) -> dict[str, Any]:
    return {
        "KeyConditionExpression": "pk = :job AND sk BETWEEN :from AND :job_item",
        "ExpressionAttributeValues": to_dynamo(
            {":job": job_id, ":from": schema.event_sk(seq), ":job_item": schema.JOB_SK}
        ),
        "ConsistentRead": True,
    }


def read(table: Table, segments: SegmentStore, job_id: str) -> tuple[list[Item], int] | None:
    """The job's slots in seq order then its job item (absent: no job), and how many events from
    seq 0 its segments hold as stored. ``None``: the job was recreated under its id meanwhile."""
    page = table.client.query(TableName=table.name, Limit=PROBE_ITEMS, **log_request(job_id, 0))
    probe = [i for i in map(from_dynamo, page.get("Items", [])) if i]
    if not page.get("LastEvaluatedKey"):
        return probe, 0
    return _rest(table, segments, job_id, probe, page["LastEvaluatedKey"])


def _rest(
    table: Table, segments: SegmentStore, job_id: str, probe: list[Item], resume: dict[str, Any]
) -> tuple[list[Item], int] | None:
    """The slots after the probe's, and the job item — from the segments' end if they reach
    past the probe, else from where the probe stopped — with how many events the segments gave.
    ``None``: the job is not the one the probe saw (recreated under its id)."""
    if probe[-1][schema.SK] == schema.JOB_SK:
        return probe, 0  # the probe read the whole log after all
    first = probe[0] if probe[0].get("state") == COMMITTED else None
    job_at = str(first["at"]) if first and int(first["seq"]) == 0 else None
    chain = segments.read_chain(job_id, job_at) if job_at else []
    compact = [e for segment in chain for e in segment.events]
    if compact and int(compact[-1]["seq"]) > int(probe[-1]["seq"]):
        # Read from the segments' last event on: it must equal the stored one.
        tail = table.query(**log_request(job_id, int(compact[-1]["seq"])))
        if tail and _same_event(tail[0], compact[-1]) and tail[-1][schema.SK] == schema.JOB_SK:
            items, covered = compact[:-1] + tail, len(compact)
        else:
            log.warning("the segments of job %s do not match its log: reading its events", job_id)
            items = table.query(**log_request(job_id, 0))
            covered = _agreeing(compact, items)  # the backfill mends the segments from there
    else:
        items = probe + table.query(**{**log_request(job_id, 0), "ExclusiveStartKey": resume})
        covered = _agreeing(compact, items)
    job = items[-1] if items and items[-1][schema.SK] == schema.JOB_SK else None
    if job is not None and job_at is not None and job.get("created_at") != job_at:
        return None
    return items, covered


def _agreeing(compact: list[Item], stored: list[Item]) -> int:
    """How many of the segments' events, from seq 0, the stored slots hold as they are."""
    agreeing = 0
    for ours, theirs in zip(compact, stored, strict=False):
        if not _same_event(theirs, ours):
            break
        agreeing += 1
    return agreeing


def _same_event(stored: Item, compact: Item) -> bool:
    """The stored slot holds the event the segment says it does (its TTL may have been raised)."""
    return (
        stored.get("state") == COMMITTED and {k: v for k, v in stored.items() if k not in OMITTED} == compact
    )
