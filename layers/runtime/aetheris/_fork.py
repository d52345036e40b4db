"""Time travel: a new job whose log is an old job's log up to a point (``fork``), or up to just before
its failed operation (``retry``).

The new job gets a new id, the same job type and the job type's latest registered version (so a
fixed deployment is tried from the step that failed). Its log is a fresh ``JobCreated`` (naming
``forked_from: {job_id, seq, via}``, carrying the input) followed by copies of the old job's events
``1 .. through`` under the new id, then it is ticked like any new job: replay answers every copied
operation from its copied outcome, and the first operation after the copy runs live, under the new
job's own ledger keys (``{new_job_id}:{step_id}:{tool}:{n}``).

What is copied besides the events, and why:

* The old job's ledger entries of the copied operations, for the attempts whose slot is at most
  ``keep_effects_through`` (a claim names its slot): results (``RECORDED``), outcomes never known
  (``UNKNOWN``) and open claims (``CLAIMED``). So a recorded effect is never made again — a step that
  runs again in the fork gets its earlier calls' results from the ledger — and an ``AT_MOST_ONCE``
  call that may have happened is refused again, never repeated. ``FAILED`` entries hold no result
  and are left behind: the fork's attempts call those tools afresh. Spending (``budget.spend_of``)
  counts the copied model calls, as the old job's did at the same point.
* Offloaded values are read and stored again under the new job's id: the fork does not depend on the
  old job's objects, which expire with the old job.

Decisions on the cut points (documented in the README):

* ``seq`` must name a committed event of the old job, after its ``JobCreated`` (0 is allowed: a
  fork from the start) and before its end event; past the end is ``InvalidForkPoint``.
* A seq between a step's claim and its commit does not exist: only committed events are copied.
  The step in flight there (its open slot, its claims under that slot) is not part of the fork, so
  it runs afresh, under the new keys — whatever that attempt did in the world is not known to it.
* A fork whose last copied event parks the job (``WaitStarted``, ``TimerStarted``) copies up to the
  event before it: the fork parks again itself (a job item that says ``WAITING``, a wait timeout
  counted from the fork, a timer for its whole duration). Signals consumed before the cut are in the
  copied log; signals in the old job's inbox are the old job's (the inbox is per job): the fork waits
  for a signal sent to *its* id.
* A seq inside a compensation run (after a failure, a cancel or a crash loop) continues that run:
  the copied compensations are not made again, the rest run live with today's code — how a fixed
  compensation is tried.

``retry`` is a fork cut before the first event of the operation the job failed at (its final
``StepFailed``, ``WaitTimedOut``, ``OperationAborted`` or ``CancelRequested``), so that operation
runs again with a fresh retry policy, its earlier recorded calls answered from the ledger (as DBOS's
``resume``). A job whose compensations already ran is refused (``NotRetryable``): they undid steps
in the world that the copied log says are done; fork it at a seq before those steps instead.

Writes: the copies first (conditional puts: nothing already there is overwritten), the job item and
its ``JobCreated`` last, in one transaction, then the first tick. A fork interrupted before its last
write leaves copies no job item points at (no reader sees them); an idempotency key makes a repeat
create the job under a fresh id. Rejected: one transaction for everything (100 items at most), and
the job item first (a worker could tick a log that is still being copied).
"""

from __future__ import annotations

import json
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aetheris._store import schema
from aetheris._store.conditions import absent
from aetheris._store.dynamo import ConditionFailed, Item, Table
from aetheris._store.jobs import JobSnapshot
from aetheris._store.payloads import RECORDED_ATTRIBUTES, is_reference
from aetheris.errors import AetherisError
from aetheris.events import EffectState, EventType, JobStatus, OpKind

if TYPE_CHECKING:
    from aetheris._engine.services import Services

_ENDS = (EventType.JOB_COMPLETED.value, EventType.JOB_FAILED.value, EventType.JOB_CANCELLED.value)
# A cut at one of these copies up to the event before: the fork parks (or fans out, or starts its
# own child) itself — a fan-out's branch slots and a child job belong to the job that started them.
_PARKING = (
    EventType.WAIT_STARTED.value,
    EventType.TIMER_STARTED.value,
    EventType.FAN_OUT_STARTED.value,
    EventType.CHILD_STARTED.value,
)
# Where a job that ended FAILED or CANCELLED stopped: the failed operation's last event.
_FAILURES = (
    EventType.STEP_FAILED.value,
    EventType.WAIT_TIMED_OUT.value,
    EventType.OPERATION_ABORTED.value,
    EventType.CANCEL_REQUESTED.value,
)
_KEPT_EFFECTS = (EffectState.RECORDED.value, EffectState.UNKNOWN.value, EffectState.CLAIMED.value)
# Slot attributes that belong to the old job's slot, not to the copied event.
# A grant of the old job's next slot goes too: the fork's first tick claims its slot.
_SLOT_ONLY = (
    schema.TTL_ATTRIBUTE,
    "lease_until",
    "claim_token",
    "claimed_at",
    "released",
    "last_error",
    "grant_token",
    "grant_until",
)


class InvalidForkPoint(AetherisError):
    """The seq to fork at is not a point of the job's log a new job can start from."""

    def __init__(self, job_id: str, seq: int, reason: str) -> None:
        self.job_id, self.seq, self.reason = job_id, seq, reason
        super().__init__(f"job {job_id} cannot be forked at seq {seq}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.seq, self.reason))


class NotRetryable(AetherisError):
    """``retry`` is for a job that ended FAILED or CANCELLED without compensations."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id, self.reason = job_id, reason
        super().__init__(f"job {job_id} cannot be retried: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.reason))


@dataclass(frozen=True)
class ForkPlan:
    source: JobSnapshot
    through: int  # the last seq copied
    keep_effects_through: int  # ledger entries claimed at a slot up to this one are copied
    at_seq: int  # the seq asked for (fork) or the failure's (retry)
    via: str  # "fork" or "retry"

    @property
    def source_id(self) -> str:
        return str(self.source.job["job_id"])

    def forked_from(self) -> dict[str, Any]:
        return {"job_id": self.source_id, "seq": self.at_seq, "copied_through": self.through, "via": self.via}


def plan_fork(snapshot: JobSnapshot, at_seq: int) -> ForkPlan:
    events = snapshot.events
    job_id = str(snapshot.job["job_id"])
    last = int(events[-1]["seq"]) if events else 0
    run_start = _first_seq(events)  # a continued job's log (and fork) is its current run's
    if at_seq < 0:
        raise InvalidForkPoint(job_id, at_seq, "a seq is 0 or more")
    if at_seq > last:
        raise InvalidForkPoint(job_id, at_seq, f"past the end of its log, which ends at seq {last}")
    if 0 < at_seq < run_start:
        raise InvalidForkPoint(
            job_id, at_seq, f"it is before the job's current run, which continued as new at seq {run_start}"
        )
    if _at(events, at_seq)["type"] in _ENDS:
        raise InvalidForkPoint(
            job_id, at_seq, f"it is the job's end ({_at(events, at_seq)['type']}): fork before it"
        )
    through = _unparked(events, at_seq)
    return ForkPlan(snapshot, through, through, at_seq, "fork")


def plan_retry(snapshot: JobSnapshot) -> ForkPlan:
    job_id = str(snapshot.job["job_id"])
    status = snapshot.status
    if status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise NotRetryable(job_id, f"it is {status.value}; only a FAILED or CANCELLED job is retried")
    events = snapshot.events
    if any(e["type"] == EventType.COMPENSATION_COMMITTED.value for e in events):
        raise NotRetryable(
            job_id,
            "its compensations already undid steps in the world that its log says are done; fork it "
            "(aetheris fork ID --at SEQ) at a seq before the first step they undid",
        )
    index = len(events) - 1
    while index > 0 and (events[index]["type"] in _ENDS or events[index].get("op_kind") == OpKind.COMPENSATE):
        index -= 1
    failed = events[index]
    if failed["type"] in _FAILURES and failed.get("op") is not None:
        op = failed["op"]
        first = min(int(e["seq"]) for e in events if e.get("op") == op)
        through = _unparked(events, first - 1)
    else:  # the job function failed by itself after this event: run it again from here
        through = _unparked(events, int(failed["seq"]))
    if _first_seq(events) > 0:  # a continued job is retried in its current run, from its state
        through = max(through, _first_seq(events))
    return ForkPlan(snapshot, through, int(failed["seq"]), int(failed["seq"]), "retry")


def _unparked(events: list[Item], seq: int) -> int:
    """``seq``, or the one before it when ``seq`` parks the job (the fork parks again itself)."""
    return seq - 1 if seq > 0 and _at(events, seq)["type"] in _PARKING else seq


def _first_seq(events: list[Item]) -> int:
    return int(events[0]["seq"]) if events else 0


def _at(events: list[Item], seq: int) -> Item:
    """The event at ``seq`` of a log that starts at its first seq (0, or a continued run's start)."""
    return events[seq - _first_seq(events)] if seq >= _first_seq(events) else events[0]


def copy_log(services: Services, plan: ForkPlan, new_id: str) -> None:
    """Write the copied events and ledger entries of ``plan`` under ``new_id`` (before its job item)."""
    table = services.jobs.table
    source = plan.source_id
    for item in plan.source.events:
        seq = int(item["seq"])
        if seq == 0 or seq > plan.through:
            continue
        copy = _moved(services, item, new_id, schema.event_sk(seq))
        if copy.get("type") == EventType.SIGNAL_CONSUMED.value and copy.get("detail"):
            # The signal was the old job's (the inbox is per job): its id must not mark a signal of
            # the same id sent to the fork as consumed already.
            detail = json.loads(copy["detail"])
            detail["signal_id"] = f"{source}:{detail.get('signal_id')}"
            copy["detail"] = json.dumps(detail)
        _put_once(table, copy)
    ops = {
        int(e["op"])
        for e in plan.source.events
        if e.get("op") is not None and int(e["seq"]) <= plan.keep_effects_through
    }
    for entry in services.ledger.list(source):
        if not _kept(entry, ops, plan.keep_effects_through):
            continue
        copy = _moved(services, entry, new_id, str(entry[schema.SK]))
        key = entry.get("idempotency_key")
        if isinstance(key, str) and key.startswith(f"{source}:"):
            copy["idempotency_key"] = new_id + key[len(source) :]
            copy["forked_from_key"] = key
        _put_once(table, copy)


def _kept(entry: Item, ops: set[int], through: int) -> bool:
    if entry.get("state") not in _KEPT_EFFECTS:
        return False
    try:
        op = int(str(entry[schema.SK])[len(schema.EFFECT_PREFIX) :].split("-", 1)[0])
    except ValueError:
        return False
    claimed_at_slot = entry.get("claim_seq")
    return op in ops and (claimed_at_slot is None or int(claimed_at_slot) <= through)


def _moved(services: Services, item: Item, new_id: str, sk: str) -> Item:
    copy = {k: v for k, v in item.items() if k not in _SLOT_ONLY}
    copy[schema.PK], copy[schema.SK] = new_id, sk
    # The fork's own provisional TTL, never the old job's: a day above the floor its job item gets
    # when it is created right after the copy (the floor is a lower bound of its items' TTLs).
    copy[schema.TTL_ATTRIBUTE] = services.log.lifetime.provisional(services.clock.now() + timedelta(days=1))
    if "job_id" in copy:
        copy["job_id"] = new_id
    payloads = services.payloads
    for name in RECORDED_ATTRIBUTES:
        value = copy.get(name)
        if is_reference(value):  # stored again under the fork: the old job's objects expire with it
            copy[name] = payloads.offload(new_id, payloads.text(str(value)) or "null", always=True)
    return copy


def _put_once(table: Table, item: Item) -> None:
    with suppress(ConditionFailed):  # written by an earlier try of this very fork (same key, same copy)
        table.put(item, absent(schema.PK))
