"""Why a job on the attention index is there: one verdict, used by the sweeper (what to do) and by
``GET /observability/stuck`` (what to show), so the two can never disagree.

``diagnose(tail, now, ...)`` reads only the job's tail (job item, open claim, last event) and says:

* ``MOVE``  — healthy: the entry was early (the job progressed, a live worker holds it, its timer
  is later); move the entry to ``next_look`` (``None``: off the index, e.g. a wait without timeout).
* ``TICK``  — it needs a tick: a runnable job whose next tick was due ``stall_after`` ago and that
  nobody holds (``tick_lost``), or whose worker died holding it (``lease_expired``); a parked job
  whose timer or deadline has come (routine: ``timer_due``), or that was asked to cancel.
* ``EXPIRE`` — finished, its old retention pass (a job from before provisional TTLs) is still
  pending: run it. A finished job with a floor needs nothing: off the index.
* ``WAIT``  — nothing the sweeper can do now: a rescue tick was sent and is given time to arrive
  (backing off), or a live worker holds the job far past any step's time limit (``no_commit``).

A finding with a ``reason`` and a ``since`` is *stuck* once ``now - since`` passes a threshold;
a routine due timer is stuck only once it is overdue by that much.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from aetheris._clock import from_millis, to_millis
from aetheris._store.lifetime import pass_pending
from aetheris._store.watch import PARKED, SWEEPS, SWEPT_AT, Tail
from aetheris.config import Settings
from aetheris.events import Event, EventType

# A rescue tick that did not help is sent again after stall_after, then 2x, 4x ... at most this many x.
MAX_BACKOFF_FACTOR = 16


class Action(enum.StrEnum):
    MOVE = "move"
    TICK = "tick"
    EXPIRE = "expire"
    WAIT = "wait"


class Reason(enum.StrEnum):
    TICK_LOST = "tick_lost"  # runnable, nobody holds it, its next tick never came
    LEASE_EXPIRED = "lease_expired"  # its worker died (or was cut off) holding the next slot
    NO_COMMIT = "no_commit"  # a live lease, renewed far past the step time limit, and no commit
    TIMER_DUE = "timer_due"  # its timer or wait deadline has come and not been acted on
    CANCEL_PENDING = "cancel_pending"  # asked to cancel while parked, and still parked
    DEAD_LETTERED = "dead_lettered"  # a tick for it reached the step DLQ (see _observability)
    SIGNAL_DEAD_LETTERED = "signal_dead_lettered"  # a signal for it reached the signal DLQ


@dataclass(frozen=True)
class Finding:
    action: Action
    reason: Reason | None = None
    since: datetime | None = None  # when it started to need something
    next_look: datetime | None = None  # MOVE: the entry's new place
    sweeps: int = 0  # TICK: the rescue count once this tick is sent (WAIT: so far)
    evidence: dict[str, Any] = field(default_factory=dict)

    def stuck(self, now: datetime, threshold: timedelta) -> bool:
        return self.reason is not None and self.since is not None and now - self.since >= threshold


def diagnose(tail: Tail, now: datetime, settings: Settings) -> Finding:
    """The verdict on a due job, from its tail alone (``settings``: stall_after, step_timeout, lease)."""
    stall_after, step_timeout, lease = settings.stall_after, settings.step_timeout, settings.lease
    evidence = evidence_of(tail)
    status = tail.status
    if status.is_terminal:
        pending = "expires_at" in tail.job and pass_pending(tail.job)
        return Finding(Action.EXPIRE if pending else Action.MOVE, evidence=evidence)
    claim = tail.claim
    lease_until = int(claim.get("lease_until", 0)) if claim else 0
    if claim is not None and lease_until >= to_millis(now):
        limit = from_millis(int(claim.get("claimed_at", lease_until))) + step_timeout
        if now > limit + lease:  # renewed past any step's time limit: a worker alive but stuck
            return Finding(Action.WAIT, Reason.NO_COMMIT, limit, evidence=evidence)
        return Finding(Action.MOVE, next_look=from_millis(lease_until) + stall_after, evidence=evidence)
    if status in PARKED:
        return _parked(tail, now, stall_after, evidence)
    if claim is not None and lease_until > 0:  # claimed, never committed nor given back
        reason, since = Reason.LEASE_EXPIRED, from_millis(lease_until)
    else:
        reason, since = Reason.TICK_LOST, _next_tick_at(tail)
    if now - since < stall_after:
        return Finding(Action.MOVE, next_look=since + stall_after, evidence=evidence)
    return _rescue(tail, reason, since, now, stall_after, evidence)


def _parked(tail: Tail, now: datetime, stall_after: timedelta, evidence: dict[str, Any]) -> Finding:
    requested = tail.job.get("cancel_requested_at")
    if requested:
        since = datetime.fromisoformat(str(requested))
        if now - since < stall_after:  # the cancel sent its own tick; this is the backstop
            return Finding(Action.MOVE, next_look=since + stall_after, evidence=evidence)
        return _rescue(tail, Reason.CANCEL_PENDING, since, now, stall_after, evidence)
    due = _parked_due(tail)
    if due is None or due > now:  # parked on a signal (the signal wakes it), or not due yet
        return Finding(Action.MOVE, next_look=due, evidence=evidence)
    return _rescue(tail, Reason.TIMER_DUE, due, now, stall_after, evidence)


def _rescue(
    tail: Tail,
    reason: Reason,
    since: datetime,
    now: datetime,
    stall_after: timedelta,
    evidence: dict[str, Any],
) -> Finding:
    """TICK, unless a tick of this episode was sent recently: then WAIT (backing off)."""
    swept_ms = tail.job.get(SWEPT_AT)
    sweeps = int(tail.job.get(SWEEPS, 0)) if swept_ms is not None and int(swept_ms) >= to_millis(since) else 0
    if sweeps:
        pause = stall_after * min(2 ** (sweeps - 1), MAX_BACKOFF_FACTOR)
        if now - from_millis(int(swept_ms or 0)) < pause:
            return Finding(Action.WAIT, reason, since, sweeps=sweeps, evidence=evidence)
    return Finding(Action.TICK, reason, since, sweeps=sweeps + 1, evidence=evidence)


def _next_tick_at(tail: Tail) -> datetime:
    """When the runnable job's next tick was due: a retry's time, else its last commit."""
    if tail.last is None:
        return datetime.fromisoformat(str(tail.job["created_at"]))
    last = Event.from_item(tail.last)
    if last.type is EventType.STEP_FAILED and last.next_attempt_at is not None:
        return last.next_attempt_at
    return last.at


def _parked_due(tail: Tail) -> datetime | None:
    if tail.last is None:
        return None
    last = Event.from_item(tail.last)
    if last.type not in (EventType.TIMER_STARTED, EventType.WAIT_STARTED):
        return None
    raw = last.detail.get("fire_at") or last.detail.get("deadline")
    return datetime.fromisoformat(str(raw)) if raw else None


def evidence_of(tail: Tail) -> dict[str, Any]:
    """What an operator needs to judge the verdict: last commit, last claim, worker, fence, lease."""
    last, claim, job = tail.last or {}, tail.claim or {}, tail.job
    lease_until = claim.get("lease_until")
    return {
        "last_seq": last.get("seq"),
        "last_event": last.get("type"),
        "last_commit_at": last.get("at"),
        "last_claim_at": _iso(claim.get("claimed_at")),
        "worker_id": claim.get("worker_id") or last.get("worker_id"),
        "attempt": last.get("attempt"),
        "fence": claim.get("fence", last.get("fence")),
        "lease_until": _iso(lease_until) if lease_until else None,
        # Claims of the open slot neither committed nor given back: workers that died holding it.
        "abandoned_claims": int(claim["fence"]) - int(claim.get("released", 0)) if claim else None,
        "waiting_for": job.get("waiting_for"),
        "rescue_ticks": job.get(SWEEPS),
        "last_rescue_at": _iso(job.get(SWEPT_AT)),
    }


def _iso(millis: Any) -> str | None:
    return None if millis is None else from_millis(int(millis)).isoformat()
