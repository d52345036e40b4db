"""Retention: a finished job's items get a TTL (``expires_at``) so that DynamoDB removes the job entirely.

When a job ends (``JobCompleted``, ``JobFailed``, ``JobCancelled``) its terminal commit sets
``expires_at`` on the job item and on the terminal event, in the same write as the outcome, and
marks the job item *retention pending* by keeping it on the attention index (``watch.py``). Right after the
commit the worker runs ``Retention.expire``: one consistent, keys-only Query per table (the job's
events and effect-ledger entries, and its signals in the inbox), an ``expires_at`` update on each
item that has none yet, and last the job item's marker removed. So the marker goes only once every
item carries its TTL.

If that pass fails (the worker dies after the commit, or DynamoDB throttles it), nothing is lost:
the job item still expires on time, and the sweeper finds the marked job on the by-due index once
it is due (``stall_after`` later) and runs the pass again; items that already carry ``expires_at``
are skipped, so a repeat costs only the two Queries and the writes that were missing. A signal that
lands in the inbox after the pass read it is expired by the signal ingest itself (it finds the job
finished). DynamoDB deletes expired items within days of ``expires_at``, without write cost.

Rejected: writing ``expires_at`` on every item as it is written (a parked job may wait longer than
the retention, and its log must not vanish under it), and a TTL on the job item alone (the events
and ledger would outlive it forever, with nothing left to find them by).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aetheris._store import schema
from aetheris._store.conditions import present
from aetheris._store.dynamo import ConditionFailed, Table, to_dynamo
from aetheris._store.watch import look_at


def expires_at(now: datetime, retention: timedelta) -> int:
    """The TTL value DynamoDB expects: epoch seconds (a number), here ``now + retention``."""
    return int((now + retention).timestamp())


def pending_marker(job_id: str, due: datetime, shards: int) -> dict[str, Any]:
    """Job-item attributes that keep a finished job on the attention index (its shard of by-due)
    until its pass is done: the sweeper runs the pass again if it is still there at ``due``."""
    return look_at(job_id, due, shards)


@dataclass
class RetentionReport:
    job_id: str
    expired: int = 0  # items that got expires_at from this pass (the job item not counted)
    skipped: int = 0  # items that had it already (the terminal event, an earlier pass)


class Retention:
    def __init__(self, jobs: Table, inbox: Table) -> None:
        self.jobs = jobs
        self.inbox = inbox

    def expire(self, job_id: str, at: int) -> RetentionReport:
        """Give every item of the finished job ``expires_at = at`` (epoch seconds), then unmark it."""
        report = RetentionReport(job_id)
        for table in (self.jobs, self.inbox):
            for item in self._keys(table, job_id):
                if table is self.jobs and item[schema.SK] == schema.JOB_SK:
                    continue  # the job item goes last: its marker says the pass is not done
                if schema.TTL_ATTRIBUTE in item:
                    report.skipped += 1
                elif self.expire_item(table, job_id, str(item[schema.SK]), at):
                    report.expired += 1
        self._unmark(job_id, at)
        return report

    def expire_item(self, table: Table, job_id: str, sk: str, at: int) -> bool:
        """Set ``expires_at`` on one item; ``False`` if the item is gone (never re-created by this write)."""
        try:
            # Only an item that exists gets a TTL: an update must not create a stray key-only item.
            table.update(job_id, sk, {schema.TTL_ATTRIBUTE: at}, present(schema.PK))
        except ConditionFailed:
            return False
        return True

    def _unmark(self, job_id: str, at: int) -> None:
        # The job item keeps (or gets) its TTL and leaves the by-due index: the pass is complete.
        # A failed condition means the job item has expired already: nothing left to unmark.
        with suppress(ConditionFailed):
            self.jobs.update(
                job_id,
                schema.JOB_SK,
                {schema.TTL_ATTRIBUTE: at},
                present(schema.PK),
                remove=(schema.DUE_INDEX_PK, schema.DUE_INDEX_SK),
            )

    def _keys(self, table: Table, job_id: str) -> list[dict[str, Any]]:
        # Consistent, so that an item written just before the terminal commit is seen; only the
        # keys and the TTL are returned (the read still costs the items' full size).
        return table.query(
            KeyConditionExpression="pk = :job",
            ExpressionAttributeValues=to_dynamo({":job": job_id}),
            ProjectionExpression="pk, sk, #ttl",
            ExpressionAttributeNames={"#ttl": schema.TTL_ATTRIBUTE},
            ConsistentRead=True,
        )
