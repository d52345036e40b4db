"""``build_trace`` on hand-written log items: what the crashed, unseen and running attempts are made
of — including the takeover fields the store is asked to keep (``reclaimed_claimed_at``,
``reclaimed_lease_until``) and ledger inputs (``args_preview``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aetheris._clock import to_millis
from aetheris.events import Event, JobStatus
from aetheris.runtime import JobView
from aetheris.trace import build_trace

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def ms(seconds: float) -> int:
    return to_millis(T0 + timedelta(seconds=seconds))


def job(status: JobStatus) -> JobView:
    return JobView(job_id="j", job_type="t", version="1", status=status, created_at=T0, updated_at=T0)


def slot(seq: int, **fields: Any) -> dict[str, Any]:
    base = {
        "job_id": "j",
        "seq": seq,
        "state": "COMMITTED",
        "at": (T0 + timedelta(seconds=seq * 10)).isoformat(),
    }
    return base | fields


CREATED = slot(0, type="JobCreated", fence=0, attempt=0, worker_id="client")


def test_build_trace_takeover_with_the_requested_slot_fields_gives_the_crashed_claims_times() -> None:
    step = slot(
        1,
        type="StepCommitted",
        fence=3,
        attempt=1,
        worker_id="w2",
        op=0,
        op_kind="step",
        name="charge",
        reclaimed_from="w1",
        claimed_at=ms(9),
        released=1,  # one earlier claim was given back (an early tick): not a crash
        reclaimed_claimed_at=ms(2),
        reclaimed_lease_until=ms(8),
        started_at=(T0 + timedelta(seconds=9)).isoformat(),
        ended_at=(T0 + timedelta(seconds=10)).isoformat(),
        duration_ms=1000,
    )
    slots = [CREATED, step]

    trace = build_trace(job(JobStatus.RUNNING), [Event.from_item(s) for s in slots], [], slots=slots)

    (op,) = trace.operations
    crashed, committed = op.attempts
    assert (crashed.worker_id, crashed.fence, crashed.outcome) == ("w1", 2, "crashed")
    assert crashed.claimed_at == T0 + timedelta(seconds=2) and crashed.lease_until == T0 + timedelta(
        seconds=8
    )
    assert (crashed.ended_at, crashed.duration_ms) == (T0 + timedelta(seconds=8), 6000)
    assert crashed.taken_over_at == committed.claimed_at == T0 + timedelta(seconds=9)
    assert op.unseen_claims == 0  # 3 claims: the crashed one, the released one, the committer


def test_build_trace_claims_nobody_can_name_are_counted_not_invented() -> None:
    step = slot(1, type="StepCommitted", fence=4, attempt=1, worker_id="w3", op=0, op_kind="step", name="s")
    step |= {"reclaimed_from": "w2", "claimed_at": ms(9)}
    slots = [CREATED, step]

    trace = build_trace(job(JobStatus.RUNNING), [Event.from_item(s) for s in slots], [], slots=slots)

    (op,) = trace.operations
    assert [a.outcome for a in op.attempts] == ["crashed", "committed"]
    assert op.attempts[0].claimed_at is None  # not kept by the store: unknown, not guessed
    assert op.unseen_claims == 2


def test_build_trace_expired_open_claim_is_the_running_attempt_of_the_retrying_step() -> None:
    failed = slot(1, type="StepFailed", fence=1, attempt=1, worker_id="w1", op=0, op_kind="step", name="s")
    failed |= {
        "error": json.dumps({"type": "builtins.ConnectionError", "message": "reset", "retryable": True}),
        "next_attempt_at": (T0 + timedelta(seconds=11)).isoformat(),
    }
    claim = {
        "seq": 2,
        "state": "CLAIMED",
        "worker_id": "w2",
        "fence": 1,
        "claimed_at": ms(12),
        "lease_until": ms(20),
    }
    ledger = [
        {
            "sk": "FX#0-s#http.get#0",
            "state": "CLAIMED",
            "idempotency_key": "j:0-s:http.get:0",
            "claims": 2,
            "claim_seq": 2,
            "claim_fence": 1,
            "worker_id": "w2",
            "args_preview": json.dumps({"args": ["https://x"], "kwargs": {"Authorization": "Bearer y"}}),
        }
    ]
    slots = [CREATED, failed]
    events = [Event.from_item(s) for s in slots]

    trace = build_trace(
        job(JobStatus.RUNNING), events, ledger, claim=claim, slots=slots, now=T0 + timedelta(seconds=30)
    )

    (op,) = trace.operations
    first, running = op.attempts
    assert (first.outcome, running.outcome, running.attempt, running.worker_id) == (
        "failed",
        "running",
        2,
        "w2",
    )
    assert trace.open_claim is not None and trace.open_claim.expired is True
    assert "lease expired without a commit" in running.ended_because
    (effect,) = op.effects
    assert effect.input == {"args": ["https://x"], "kwargs": {"Authorization": "[redacted]"}}
    node = next(n for n in trace.causes if n.kind == "effect")
    assert node.parent == "op:0/attempt:2.1"  # claimed under the running attempt's slot and fence
