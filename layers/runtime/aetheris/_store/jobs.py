"""The job item and the whole-collection read.

A job is created atomically with its first event (``JobCreated`` at seq 0): a failed write never
leaves a job without a log or a log without a job. The job item is a projection of the log (status,
result, error), rewritten only when the status changes, in the same transaction as that event.
So it stays small: the input lives in an item of its own (``schema.INPUT_SK``), written in the
create's transaction and read through ``JobStore.input_of`` (once per job a worker loads cold);
a job created before that keeps its input inline on the job item, and ``input_of`` reads it there.

Every item the create writes carries the provisional TTL, and the job item its floor
(``_store/retention.py``).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from aetheris._store import schema
from aetheris._store.conditions import Condition, absent, present
from aetheris._store.dynamo import Item, Table, TransactionConflict, to_dynamo
from aetheris._store.lifetime import Lifetime
from aetheris._tenancy import DEFAULT_TENANT, TENANT_ATTRIBUTE
from aetheris.events import SCHEMA_VERSION, EventType, JobStatus, SlotState

CLAIMED = SlotState.CLAIMED
COMMITTED = SlotState.COMMITTED
QUEUED = SlotState.QUEUED
# Inputs a worker keeps between ticks (they never change): enough for its jobs' inputs, bounded.
_INPUT_CACHE_BYTES = 16 * 1024 * 1024
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
    def __init__(self, table: Table, cache_jobs: int = 1000, lifetime: Lifetime | None = None) -> None:
        self.table = table
        self.cache_jobs = cache_jobs
        self.lifetime = lifetime or Lifetime()
        self._known: OrderedDict[str, list[Item]] = OrderedDict()  # job id → its committed events
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
        """One consistent Query for the job item and the log after what this runtime already knows.

        Committed events never change, so they are cached per job (bounded, least recently used
        first out); open claims and the job item are always read fresh. Only the job's current run
        is read and kept (from the job item's ``run_start_seq``: ``ctx.continue_as_new``).
        """
        with self._lock:
            known = list(self._known.get(job_id, ()))
        start = int(known[-1]["seq"]) + 1 if known else 0
        items = self._since(job_id, start) if known else self._cold(job_id)
        job = items[-1] if items and items[-1][schema.SK] == schema.JOB_SK else None
        if job is None:
            self._forget(job_id)
            return None
        run_start = int(job.get("run_start_seq", 0))
        slots = [s for s in items[:-1] if _seq(s) >= run_start]
        new_events = [s for s in slots if s.get("state") == COMMITTED]
        known = [e for e in known if int(e["seq"]) >= run_start]  # an earlier run is never read again
        if known and (not _same_job(known[0], job, run_start) or _gap(start, new_events)):
            self._forget(job_id)  # a different job under the same id, or a cache we cannot trust
            return self.load(job_id)
        events = known + new_events
        self._remember(job_id, events)
        open_claims = [s for s in slots if s.get("state") == CLAIMED]
        return JobSnapshot(job=job, events=events, claim=open_claims[-1] if open_claims else None)

    def _since(self, job_id: str, start: int) -> list[Item]:
        """The slots from ``start`` and the job item, in key order (the job item last)."""
        return self.table.query(
            KeyConditionExpression="pk = :job AND sk BETWEEN :from AND :job_item",
            ExpressionAttributeValues=to_dynamo(
                {":job": job_id, ":from": schema.event_sk(start), ":job_item": schema.JOB_SK}
            ),
            ConsistentRead=True,
        )

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
        if oldest <= run_start:
            return page
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
        """Our own commit extends what we know, if it directly follows it."""
        with self._lock:
            known = self._known.get(job_id)
            if known and int(known[-1]["seq"]) + 1 == int(event["seq"]):
                known.append(event)

    def _remember(self, job_id: str, events: list[Item]) -> None:
        with self._lock:
            self._known[job_id] = events
            self._known.move_to_end(job_id)
            while len(self._known) > self.cache_jobs:
                self._known.popitem(last=False)

    def _forget(self, job_id: str) -> None:
        """Drop what this runtime knows of the job: its events and its input."""
        with self._lock:
            self._known.pop(job_id, None)
            for key in [k for k in self._inputs if k[0] == job_id]:
                self._input_bytes -= len(self._inputs.pop(key))


def _seq(slot: Item) -> int:
    return int(str(slot[schema.SK])[len(schema.EVENT_PREFIX) :])


def _same_job(first: Item, job: Item, run_start: int) -> bool:
    """Is the first cached event this job's (not one of an older job under the same id)?"""
    if run_start:
        return int(first["seq"]) == run_start and first.get("type") == EventType.CONTINUED_AS_NEW.value
    return first.get("at") == job.get("created_at")


def _gap(start: int, new_events: list[Item]) -> bool:
    return bool(new_events) and int(new_events[0]["seq"]) != start
