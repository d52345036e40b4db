"""Retention: every item of a job carries a TTL (``expires_at``) from the moment it is written.

Each item (log slot, effect-ledger entry, inbox signal, input item, idempotency generation record)
is written with a *provisional* TTL: ``written_at + retention + horizon`` (``Settings.retention``,
``Settings.retention_horizon``). The job item records the earliest provisional TTL among its items,
its *floor* (``ttl_floor``, written with slot 0 at the start). Invariant: no item of a job that is
not finished, or finished less than ``retention`` ago, ever expires. Two things keep it:

* the terminal commit gives the job item ``expires_at = end + retention`` (as before) and writes
  nothing else: every other item already expires between ``end + retention`` and
  ``end + retention + horizon`` (its write time + retention + horizon), so a finished job is gone
  at most ``horizon`` after its job item. The final tick does O(1) work at any length;
* a job that outlives its floor (parked on a signal for 40 days, a very long run) is *extended*
  before the floor comes near: ``extension_due`` (``floor - retention - horizon / 2``) caps the
  moment it is due on the attention index (``watch.py``), so the sweeper, which reads that index
  anyway, finds it and runs ``Retention.extend``: one keys-only Query per table and a TTL update on
  each item below the new floor (``now + retention + horizon``), then the floor moved. That pass is
  O(N) in the job's items, but runs once per ``horizon / 2`` per long-lived job: amortised O(1) per
  step. Items written during the pass carry a TTL past the new floor already. The margin of
  ``horizon / 2`` absorbs a late sweeper: the floor still covers ``retention`` after any end.

Jobs from before provisional TTLs (a job item without ``ttl_floor``): their old items carry no TTL.
Such a job, still live, is due for an extension at once (its floor is taken as its start +
retention + horizon, which every item written since satisfies); the extension gives every item a
TTL and the job a floor. One that ends before that keeps the old end-of-job pass: its terminal
commit marks it *retention pending* (it stays on the attention index), the worker runs
``Retention.expire`` (every item without a TTL gets ``end + retention``, the marker goes last) and
the sweeper redoes the pass for a job still marked once it is due.

DynamoDB deletes expired items within days of ``expires_at``, without write cost.

Rejected: the end-of-job pass for every job (10,015 requests for the final tick of a 10,003-step
job, tens of seconds on AWS), a TTL on the job item alone (the events and ledger would outlive it
forever, with nothing left to find them by), and a provisional TTL that is never extended (a parked
job's log would vanish under it).
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aetheris._store import schema
from aetheris._store.conditions import absent, less_than, present
from aetheris._store.dynamo import ConditionFailed, Item, Table, to_dynamo
from aetheris._store.lifetime import Lifetime, expires_at, pass_pending
from aetheris._store.watch import look_at

__all__ = ["Lifetime", "Retention", "RetentionReport", "expires_at", "pass_pending", "pending_marker"]


def pending_marker(job_id: str, due: datetime, shards: int) -> dict[str, Any]:
    """Job-item attributes that keep a finished job on the attention index (its shard of by-due)
    until its pass is done: the sweeper runs the pass again if it is still there at ``due``."""
    return look_at(job_id, due, shards)


@dataclass
class RetentionReport:
    job_id: str
    expired: int = 0  # items that got (or had raised) expires_at from this pass (job item not counted)
    skipped: int = 0  # items that had it already (the terminal event, an earlier pass)


class Retention:
    def __init__(self, jobs: Table, inbox: Table, lifetime: Lifetime | None = None) -> None:
        self.jobs = jobs
        self.inbox = inbox
        self.lifetime = lifetime or Lifetime()

    def extend(self, job: Item, now: datetime, record_pk: str | None = None) -> RetentionReport:
        """Raise every item of the live ``job`` to ``expires_at >= now + retention + horizon`` and
        move its floor there (last: the floor never promises more than the items carry).

        ``record_pk``: the job's idempotency generation record, extended with it. O(N) in the job's
        items; due once per ``horizon / 2``.
        """
        job_id = str(job[schema.PK])
        target = self.lifetime.provisional(now)
        report = RetentionReport(job_id)
        for table in (self.jobs, self.inbox):
            for item in self._keys(table, job_id):
                if table is self.jobs and item[schema.SK] == schema.JOB_SK:
                    continue
                if table is self.jobs and _earlier_run(str(item[schema.SK]), job):
                    continue  # a run the job continued from (ctx.continue_as_new): let it expire
                held = item.get(schema.TTL_ATTRIBUTE)
                if held is not None and int(held) >= target:
                    report.skipped += 1
                elif self._raise(table, job_id, str(item[schema.SK]), schema.TTL_ATTRIBUTE, target):
                    report.expired += 1
        if record_pk is not None:
            self._raise(self.jobs, record_pk, schema.RECORD_SK, schema.TTL_ATTRIBUTE, target)
        self._raise(self.jobs, job_id, schema.JOB_SK, schema.TTL_FLOOR, target)
        return report

    def _raise(self, table: Table, pk: str, sk: str, attribute: str, target: int) -> bool:
        # Only an existing item, and only upwards: a TTL (or floor) is never lowered, and an update
        # never creates a stray key-only item.
        below = absent(attribute) | less_than(attribute, target)
        try:
            table.update(pk, sk, {attribute: target}, present(schema.PK) & below)
        except ConditionFailed:
            return False
        return True

    def expire(self, job_id: str, at: int) -> RetentionReport:
        """The old end-of-job pass: give every item of the finished job without a TTL
        ``expires_at = at`` (epoch seconds), then unmark it."""
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
        # Consistent, so that an item written just before is seen; only the keys and the TTL are
        # returned (the read still costs the items' full size).
        return table.query(
            KeyConditionExpression="pk = :job",
            ExpressionAttributeValues=to_dynamo({":job": job_id}),
            ProjectionExpression="pk, sk, #ttl",
            ExpressionAttributeNames={"#ttl": schema.TTL_ATTRIBUTE},
            ConsistentRead=True,
        )


def _earlier_run(sk: str, job: Item) -> bool:
    """Is this an item of a run the job has continued from (``ctx.continue_as_new``)? Never read
    again — the load starts at ``run_start_seq``, and positions count on, so no later key names
    it — such an item keeps its provisional TTL and expires."""
    run_start, op_base = int(job.get("run_start_seq", 0)), int(job.get("run_op_base", 0))
    if run_start <= 0:
        return False
    with suppress(ValueError):
        if sk.startswith(schema.EVENT_PREFIX):  # EV#<seq>
            return int(sk[len(schema.EVENT_PREFIX) :]) < run_start
        if sk.startswith(schema.EFFECT_PREFIX):  # FX#<position>-<step name>#<tool>#<n>
            return (schema.effect_position(sk) or 0) < op_base
        if sk.startswith(schema.BRANCH_PREFIX):  # EU#<position>#...
            return int(sk[len(schema.BRANCH_PREFIX) :].split("#", 1)[0]) < op_base
    return False
