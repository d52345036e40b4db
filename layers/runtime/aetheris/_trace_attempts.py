"""The attempt rows of a trace that need more than an event: the crashed claim a takeover reveals,
claims nobody can attribute, the open claim of the operation in progress (see ``aetheris.trace``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from aetheris._clock import from_millis, to_millis
from aetheris._trace_models import Attempt, Operation, SlotClaim
from aetheris.events import Event, EventType


def crashed_attempt(event: Event, slot: Mapping[str, Any], taken_at: datetime | None) -> Attempt | None:
    """The claim this event's worker took over, as a ``crashed`` row (None if it took none over)."""
    if event.reclaimed_from is None:
        return None
    claimed_at = millis(slot.get("reclaimed_claimed_at"))
    lease_until = millis(slot.get("reclaimed_lease_until"))
    ended = lease_until or taken_at
    return Attempt(
        attempt=max(event.attempt, 1),
        seq=event.seq,
        worker_id=event.reclaimed_from,
        fence=max(event.fence - 1, 1),
        started_at=claimed_at,
        ended_at=ended,
        duration_ms=ms_between(claimed_at, ended),
        outcome="crashed",
        ended_because=f"lease expired, taken over by {event.worker_id}",
        claimed_at=claimed_at,
        lease_until=lease_until,
        taken_over_by=event.worker_id,
        taken_over_at=taken_at,
    )


def unseen_claims(event: Event, slot: Mapping[str, Any]) -> int:
    """Claims of the event's slot other than its committer's, the crashed one shown and those given back."""
    if not slot:
        return 0
    shown = 1 + (1 if event.reclaimed_from is not None else 0)
    return max(event.fence - shown - int(slot.get("released", 0)), 0)


def why_ended(event: Event) -> str:
    if event.type is not EventType.STEP_FAILED:
        taken = f" (took the slot over from {event.reclaimed_from})" if event.reclaimed_from else ""
        return "committed" + taken
    error = f"{event.error.type}: {event.error.message}" if event.error else "failed"
    if event.next_attempt_at is not None:
        return f"{error}; retry scheduled at {event.next_attempt_at.isoformat()}"
    return f"{error}; no retry (not retryable, or out of attempts)"


def attach_open_claim(operations: list[Operation], claim: SlotClaim | None) -> None:
    """The open claim is the running attempt of the operation in progress, if one is known."""
    if claim is None or claim.released or not operations:
        return
    op = operations[-1]
    if op.state not in ("running", "retrying"):
        return
    failures = sum(1 for a in op.attempts if a.outcome == "failed")
    op.attempts.append(
        Attempt(
            attempt=failures + 1,
            seq=claim.seq,
            worker_id=claim.worker_id,
            fence=claim.fence,
            started_at=claim.claimed_at,
            ended_at=claim.lease_until if claim.expired else None,
            duration_ms=None,
            outcome="running",
            ended_because="lease expired without a commit: the worker died or hangs; the next tick "
            "takes the slot over"
            if claim.expired
            else "",
            claimed_at=claim.claimed_at,
            lease_until=claim.lease_until,
        )
    )


def millis(raw: Any) -> datetime | None:
    return from_millis(int(raw)) if raw is not None and int(raw) > 0 else None


def ms_between(start: datetime | None, end: datetime | None) -> int | None:
    if start is None or end is None:
        return None
    return int((end - start).total_seconds() * 1000)


def slot_claim(claim: Mapping[str, Any] | None, now: datetime | None) -> SlotClaim | None:
    if not claim:
        return None
    lease_until = int(claim.get("lease_until", 0))
    claimed_at = claim.get("claimed_at")
    released = lease_until == 0
    return SlotClaim(
        seq=int(claim["seq"]),
        worker_id=str(claim.get("worker_id", "")),
        fence=int(claim.get("fence", 0)),
        claimed_at=from_millis(int(claimed_at)) if claimed_at is not None else None,
        lease_until=from_millis(lease_until) if lease_until else None,
        released=released,
        expired=None if now is None or released else lease_until < to_millis(now),
    )
