"""The job item and the whole-collection read.

A job is created atomically with its first event (``JobCreated`` at seq 0): a failed write never
leaves a job without a log or a log without a job. The job item is a projection of the log (status,
result, error), rewritten only when the status changes, in the same transaction as that event.
So it stays small: the input lives in an item of its own (``schema.INPUT_SK``), written in the
create's transaction and read through ``JobStore.input_of`` (once per job a worker loads cold);
a job created before that keeps its input inline on the job item, and ``input_of`` reads it there.

Every item the create writes carries the provisional TTL, and the job item its floor
(``_store/retention.py``).

``load`` reads what a worker does not know yet: after the committed events it keeps
(``event_cache.py``), or — cold — a probe of the log's start, then its segments and the events
after them (``segments.py``). Rejected: keeping the segment index on the job item (a write on the
status-change path, and a bigger item on every tick's read) and always querying segments first
(one more request on every cold tick of a short job, which most jobs are).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from aetheris import _log_context
from aetheris._store import cold_read, schema
from aetheris._store.cold_read import log_request
from aetheris._store.conditions import Condition, absent, present
from aetheris._store.dynamo import Item, Table, TransactionConflict, to_dynamo
from aetheris._store.event_cache import DEFAULT_MAX_BYTES as DEFAULT_CACHE_BYTES
from aetheris._store.event_cache import EventCache
from aetheris._store.lifetime import Lifetime
from aetheris._store.segments import SEGMENT_EVENTS, SegmentStore
from aetheris._tenancy import DEFAULT_TENANT, TENANT_ATTRIBUTE
from aetheris.events import SCHEMA_VERSION, EventType, JobStatus, SlotState

CLAIMED = SlotState.CLAIMED
COMMITTED = SlotState.COMMITTED
QUEUED = SlotState.QUEUED
# Inputs a worker keeps between ticks (they never change): enough for its jobs' inputs, bounded.
_INPUT_CACHE_BYTES = 16 * 1024 * 1024
_BACKFILL_PER_LOAD = 2  # missing segments a cold load writes, at most

log = _log_context.logger("aetheris.store")
# Slots a cold load reads newest first with the job item, in its first request (see ``_cold``).
_COLD_PAGE = 100


@dataclass
class JobSnapshot:
    """The job item and its log as one consistent Query saw them."""

    job: Item
    events: list[Item] = field(default_factory=list)
    claim: Item | None = None  # the open (CLAIMED, uncommitted) slot after the last event, if any

    @property
    def status(self) -> JobStatus:
        return JobStatus(self.job["status"])

    @property
    def next_seq(self) -> int:
        return int(self.events[-1]["seq"]) + 1 if self.events else 0


def status_attributes(job_id: str, status: JobStatus, at: datetime) -> dict[str, Any]:
    """The job item's status fields, including the keys of the by-status index."""
    stamp = at.isoformat()
    return {
        "status": status.value,
        "updated_at": stamp,
        schema.STATUS_INDEX_PK: status.value,
        schema.STATUS_INDEX_SK: f"{stamp}#{job_id}",
    }


class JobStore:
    def __init__(
        self,
        table: Table,
        cache_jobs: int = 1000,
        lifetime: Lifetime | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        segment_events: int = SEGMENT_EVENTS,
    ) -> None:
        self.table = table
        self.cache_jobs = cache_jobs
        self.lifetime = lifetime or Lifetime()
        self._cache = EventCache(cache_bytes, cache_jobs)  # job id → its committed events
        self.segments = SegmentStore(table)
        self.segment_events = segment_events  # a run this long gets its segment
        self._inputs: OrderedDict[tuple[str, str], str] = OrderedDict()  # (job id, created_at) → input
        self._input_bytes = 0
        self._lock = threading.Lock()

    def create(
        self,
        job_id: str,
        job_type: str,
        version: str,
        input_json: str,
        at: datetime,
        idempotency_key: str | None = None,
        also: list[dict[str, Any]] | None = None,
        attention: dict[str, Any] | None = None,
        tenant: str = DEFAULT_TENANT,
        *,
        budget_json: str | None = None,
        forked_from: dict[str, Any] | None = None,
        last_seq: int = 0,
        extra: dict[str, Any] | None = None,
    ) -> Item | None:
        """Create the job (of ``tenant``) and its ``JobCreated`` event; returns the existing job item
        if it exists.

        ``JobCreated`` carries the job's input (the same stored text as the input item: inline JSON or
        the reference to its offloaded object), its per-start ``budget_json`` and, for a fork, where
        it was forked from: a job's log alone says how it began (``aetheris export``, ``fork``).

        ``also`` are more transaction actions that must succeed with the create (an idempotency
        key's generation record). Any other lost condition — slot 0 or one of ``also`` taken while
        the job item was free — is raised as ``TransactionConflict``: the caller looks again.
        ``attention`` puts the job on the sweeper's index (``watch.py``): if its first tick is never
        sent, the sweeper sends one.
        """
        ttl = self.lifetime.provisional(at)
        job = {
            schema.PK: job_id,
            schema.SK: schema.JOB_SK,
            "job_id": job_id,
            "job_type": job_type,
            "version": version,
            "created_at": at.isoformat(),
            schema.TTL_FLOOR: ttl,  # slot 0's, the input's (and a generation record's): the earliest
            "idempotency_key": idempotency_key,
            TENANT_ATTRIBUTE: tenant,
            **({"budget": budget_json} if budget_json else {}),
            **({"forked_from": json.dumps(forked_from)} if forked_from else {}),
            # A fork's log starts with its copies: signals and cancels tick the slot after them.
            **({"last_seq": last_seq} if last_seq else {}),
            **status_attributes(job_id, JobStatus.PENDING, at),
            **(attention or {}),
            **(extra or {}),
        }
        created = {
            schema.PK: job_id,
            schema.SK: schema.event_sk(0),
            "job_id": job_id,
            "seq": 0,
            "state": COMMITTED,
            "type": EventType.JOB_CREATED.value,
            "at": at.isoformat(),
            "fence": 0,
            "attempt": 0,
            "worker_id": "client",
            "schema_version": SCHEMA_VERSION,
            "input": input_json,
            "detail": json.dumps(
                {
                    "job_type": job_type,
                    "version": version,
                    **({"budget": json.loads(budget_json)} if budget_json else {}),
                    **({"forked_from": forked_from} if forked_from else {}),
                }
            ),
            schema.TTL_ATTRIBUTE: ttl,
        }
        job_input = {
            schema.PK: job_id,
            schema.SK: schema.INPUT_SK,
            "input": input_json,
            "created_at": at.isoformat(),
            schema.TTL_ATTRIBUTE: ttl,
        }
        # The job id is new: neither the job item nor slot 0 may exist yet.
        first_write = absent(schema.PK)
        try:
            self.table.transact(
                [
                    {"Put": self.table.put_request(job, first_write)},
                    {"Put": self.table.put_request(created, first_write)},
                    {"Put": self.table.put_request(job_input, first_write)},
                    *(also or []),
                ]
            )
        except TransactionConflict as conflict:
            code, current = conflict.reasons[0]
            if code == "ConditionalCheckFailed" and current is not None:
                return current
            raise
        return None

    def request_cancel(
        self, job_id: str, at: datetime, attention: dict[str, Any] | None = None
    ) -> Item | None:
        """Mark the job for cancellation; raises ``ConditionFailed`` if it is gone or finished.

        ``attention`` (``watch.py``) makes the sweeper look at the job if the cancel's tick is lost.
        """
        # Only a job that exists and has not ended can be asked to stop.
        live = present(schema.PK) & Condition(
            "NOT (#status IN (:done1, :done2, :done3))",
            {"#status": "status"},
            {":done1": "COMPLETED", ":done2": "FAILED", ":done3": "CANCELLED"},
        )
        values = {"cancel_requested_at": at.isoformat(), **(attention or {})}
        return self.table.update(job_id, schema.JOB_SK, values, live)

    def get(self, job_id: str) -> Item | None:
        return self.table.get(job_id, schema.JOB_SK)

    def input_of(self, job: Item) -> str | None:
        """The job's stored input text (JSON, or an offloaded value's reference): inline on a job
        item from before the input had its own item, else that item's (read once, then kept)."""
        if "input" in job:
            return None if job["input"] is None else str(job["input"])
        key = (str(job[schema.PK]), str(job.get("created_at")))
        with self._lock:
            cached = self._inputs.get(key)
            if cached is not None:
                self._inputs.move_to_end(key)
                return cached
        item = self.table.get(key[0], schema.INPUT_SK)
        if item is None or item.get("created_at") != key[1]:
            return None  # gone with its job (TTL), or another job's under a reused id
        text = str(item["input"])
        with self._lock:
            if len(text) <= _INPUT_CACHE_BYTES // 4 and key not in self._inputs:
                self._inputs[key] = text
                self._input_bytes += len(text)
                while self._input_bytes > _INPUT_CACHE_BYTES:
                    _, dropped = self._inputs.popitem(last=False)
                    self._input_bytes -= len(dropped)
        return text

    def load(self, job_id: str) -> JobSnapshot | None:
        """The job item and its log as of one consistent Query for what this runtime does not know.

        Committed events never change, so they are cached per job (bounded in bytes, least
        recently used first out, ``event_cache.py``); open claims and the job item are always read
        fresh. A job not in the cache is read cold. Only the job's current run is read and kept
        (from the job item's ``run_start_seq``: ``ctx.continue_as_new``).
        """
        known = self._cache.get(job_id)
        if not known:
            return self._load_cold(job_id)
        start = int(known[-1]["seq"]) + 1
        items = self.table.query(**log_request(job_id, start))
        job = items[-1] if items and items[-1][schema.SK] == schema.JOB_SK else None
        if job is None:
            self._forget(job_id)
            return None
        run_start = int(job.get("run_start_seq", 0))
        new_events = [s for s in items[:-1] if s.get("state") == COMMITTED and _seq(s) >= run_start]
        trimmed = bool(run_start) and int(known[0]["seq"]) < run_start
        if trimmed:  # a new run began: never an earlier run
            known = [e for e in known if int(e["seq"]) >= run_start]
        events = known + new_events
        if not events or not _same_job(events[0], job, run_start) or _gap(start, new_events):
            self._forget(job_id)  # a different job under the same id, or a cache we cannot trust
            return self._load_cold(job_id)
        if trimmed:  # keep only the current run
            self._cache.extend(job_id, events, replace=True)
        else:
            self._cache.extend(job_id, new_events)
        return _snapshot(job, events, items[:-1])

    def _load_cold(self, job_id: str) -> JobSnapshot | None:
        """Read the log as ``cold_read.py`` does; then keep it, and write the segments it lacks."""
        items, covered = self._cold(job_id), 0
        job = items[-1] if items and items[-1][schema.SK] == schema.JOB_SK else None
        if job is not None and not int(job.get("run_start_seq", 0)) and len(items) > 1 and _seq(items[0]) > 0:
            # A first run too long for one page: its segments, then the events after them.
            read = cold_read.read(self.table, self.segments, job_id)
            if read is None:
                self._forget(job_id)
                return self._load_cold(job_id)  # the job changed between the reads: read again
            items, covered = read
        run_start = int(items[-1].get("run_start_seq", 0)) if items else 0
        if run_start:  # a continued job: not its earlier runs' slots (a first run keeps them all)
            items = [i for i in items[:-1] if _seq(i) >= run_start] + items[-1:]
        job = items[-1] if items and items[-1][schema.SK] == schema.JOB_SK else None
        if job is None:
            self._forget(job_id)
            return None
        events = [s for s in items[:-1] if s.get("state") == COMMITTED]
        if events and _same_job(events[0], job, run_start):
            self._cache.extend(job_id, events, replace=True)
            if not run_start:  # segments cover a first run (a continued job's runs are short)
                self._backfill(job, events, covered)
        return _snapshot(job, events, items[:-1])

    def _backfill(self, job: Item, events: list[Item], covered: int) -> None:
        """Write the first few segments a cold read found missing after the ``covered`` events (a
        crash between a commit and its segment's write, a worker that did not cache the job, a
        log from before segments): amortised, never more than a few per read."""
        first = covered // self.segment_events * self.segment_events
        # Not below the job's floor (_store/retention.py): a segment lives as long as the events.
        ttl = max(self.lifetime.provisional(_at(events[-1])), int(job.get(schema.TTL_FLOOR, 0)))
        for _ in range(_BACKFILL_PER_LOAD):
            if first + self.segment_events > len(events) or int(events[first]["seq"]) != first:
                return
            self._write_segment(events[first : first + self.segment_events], events[0], ttl)
            first += self.segment_events

    def _cold(self, job_id: str) -> list[Item]:
        """A cold load: the current run's slots and the job item, never an earlier run's.

        The job item (which says where the run starts) sorts after the slots, so the first page is
        read newest first: the job item and the last ``_COLD_PAGE`` slots — for most jobs the whole
        log in one request, as before. Only a run longer than that needs a second Query, from the
        run's start up to the first page's oldest slot.
        """
        page, more = self.table.query_page(
            KeyConditionExpression="pk = :job AND sk BETWEEN :from AND :job_item",
            ExpressionAttributeValues=to_dynamo(
                {":job": job_id, ":from": schema.event_sk(0), ":job_item": schema.JOB_SK}
            ),
            ConsistentRead=True,
            ScanIndexForward=False,
            Limit=_COLD_PAGE,
        )
        page.reverse()
        if not page or page[-1][schema.SK] != schema.JOB_SK or not more:
            return page
        run_start, oldest = int(page[-1].get("run_start_seq", 0)), _seq(page[0])
        if oldest <= run_start or not run_start:
            return page  # (a first run goes on from its segments: ``_load_cold``)
        # Committed events never change: reading the older ones apart loses no consistency.
        older = self.table.query(
            KeyConditionExpression="pk = :job AND sk BETWEEN :from AND :to",
            ExpressionAttributeValues=to_dynamo(
                {
                    ":job": job_id,
                    ":from": schema.event_sk(run_start),
                    ":to": schema.event_sk(oldest - 1),
                }
            ),
            ConsistentRead=True,
        )
        return older + page

    def note_commit(self, job_id: str, event: Item) -> None:
        """Our own commit extends what we know, if it directly follows it; at the end of a run of
        ``segment_events`` events, their segment is written (best-effort).

        The run is read back as stored rather than taken from the cache: the slot items carry
        what the commit did not write (the claim's ``claimed_at``, released claims), which the
        trace reads. That read costs about as much as the segment's write (see the bench).
        """
        size = self.segment_events
        seq = int(event["seq"])
        created = self._cache.first(job_id) if self._cache.append(job_id, event) else None
        if created is None or int(created["seq"]) != 0 or (seq + 1) % size:
            return  # (segments hold a first run only: a continued job's cache starts at its run)
        try:
            run = self.segments.stored_run(job_id, seq + 1 - size, seq)
        except (BotoCoreError, ClientError) as failed:
            log.warning("could not read events %s..%s for their segment: %s", seq + 1 - size, seq, failed)
            return
        if run is not None:
            self._write_segment(run, created, self.lifetime.provisional(_at(event)))

    def _write_segment(self, run: list[Item], created: Item, ttl: int) -> None:
        try:
            self.segments.write(str(created["at"]), run, ttl)
        except (BotoCoreError, ClientError) as failed:
            # Derived data: the committed events are the log, and a cold read falls back on them.
            log.warning("could not write the segment of events %s..: %s", run[0]["seq"], failed)

    def cached(self, job_id: str) -> bool:
        """Does this worker's event cache (bounded in bytes) still hold the job's log?"""
        return job_id in self._cache

    def _forget(self, job_id: str) -> None:
        """Drop what this runtime knows of the job: its events and its input."""
        self._cache.forget(job_id)
        with self._lock:
            for key in [k for k in self._inputs if k[0] == job_id]:
                self._input_bytes -= len(self._inputs.pop(key))


def _at(event: Item) -> datetime:
    return datetime.fromisoformat(str(event["at"]))


def _snapshot(job: Item, events: list[Item], slots: list[Item]) -> JobSnapshot:
    open_claims = [s for s in slots if s.get("state") == CLAIMED]
    return JobSnapshot(job=job, events=events, claim=open_claims[-1] if open_claims else None)


def _seq(slot: Item) -> int:
    return int(str(slot[schema.SK])[len(schema.EVENT_PREFIX) :])


def _same_job(first: Item, job: Item, run_start: int) -> bool:
    """Is the first cached event this job's (not one of an older job under the same id)?"""
    if run_start:
        return int(first["seq"]) == run_start and first.get("type") == EventType.CONTINUED_AS_NEW.value
    return first.get("at") == job.get("created_at")


def _gap(start: int, new_events: list[Item]) -> bool:
    return bool(new_events) and int(new_events[0]["seq"]) != start
