"""The attention index's keys and the sweeper's diagnosis, as pure functions (no store involved)."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from aetheris._clock import to_millis
from aetheris._diagnosis import Action, Reason, diagnose
from aetheris._store import schema
from aetheris._store.watch import SWEEPS, SWEPT_AT, Tail, attention, refresh_if_stale, shard_of
from aetheris.config import Settings
from aetheris.events import JobStatus

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SETTINGS = Settings()
STALL = SETTINGS.stall_after


def job_item(status: JobStatus, **extra: Any) -> dict[str, Any]:
    item = {
        schema.PK: "job-1",
        schema.SK: schema.JOB_SK,
        "status": status.value,
        "created_at": T0.isoformat(),
    }
    return item | extra


def event(seq: int, type_: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": "job-1",
        "seq": seq,
        "type": type_,
        "at": at.isoformat(),
        "fence": 1,
        "attempt": 1,
        "worker_id": "w-1",
        "state": "COMMITTED",
    } | extra


def test_shard_of_is_stable_and_spreads_a_million_ids_evenly() -> None:
    ids = [str(uuid.UUID(int=n * 7919 + 1)) for n in range(20_000)]
    shards = Counter(shard_of(job_id, 32) for job_id in ids)

    assert shard_of("job-1", 32) == shard_of("job-1", 32) == "31"  # crc32: the same in every process
    assert set(shards) == {str(n) for n in range(32)}
    assert max(shards.values()) < 1.2 * min(shards.values())


def test_attention_by_status_progress_deadline_timer_retention_or_none() -> None:
    def due(status: JobStatus, **kw: Any) -> int | None:
        return attention("job-1", status, T0, STALL, 32, **kw)[schema.DUE_INDEX_SK]

    retry_at = T0 + timedelta(minutes=10)
    assert due(JobStatus.RUNNING) == to_millis(T0 + STALL)
    assert due(JobStatus.COMPENSATING) == to_millis(T0 + STALL)
    assert due(JobStatus.RUNNING, next_tick_at=retry_at) == to_millis(retry_at + STALL)
    assert due(JobStatus.SLEEPING, parked_due=T0 + timedelta(days=2)) == to_millis(T0 + timedelta(days=2))
    assert due(JobStatus.WAITING) is None, "a wait without deadline is not on the index"
    assert due(JobStatus.COMPLETED) is None, "a finished job's items carry their TTL: nothing to look at"
    old_job = {"retention_pass": True}
    assert due(JobStatus.COMPLETED, **old_job) == to_millis(T0 + STALL), "an old job's pass is checked once"
    cap = T0 + timedelta(days=15)
    assert due(JobStatus.WAITING, cap=cap) == to_millis(cap), "a wait without deadline: at its extension"
    assert due(JobStatus.SLEEPING, parked_due=T0 + timedelta(days=20), cap=cap) == to_millis(cap)
    assert due(JobStatus.RUNNING, cap=T0) == to_millis(T0), "an extension due now: due now"


def test_refresh_if_stale_capped_by_an_extension_due_writes_it_once() -> None:
    cap = T0 - timedelta(seconds=1)
    job = job_item(JobStatus.RUNNING) | attention("job-1", JobStatus.RUNNING, T0, STALL, 32)
    fresh = refresh_if_stale(job, T0, STALL, 32, cap=cap)
    assert fresh is not None and fresh[schema.DUE_INDEX_SK] == to_millis(cap)
    assert refresh_if_stale(job | fresh, T0 + timedelta(seconds=5), STALL, 32, cap=cap) is None


@given(st.lists(st.integers(min_value=0, max_value=30_000), min_size=1, max_size=200))
def test_refresh_if_stale_writes_at_most_once_per_half_stall_window(gaps_ms: list[int]) -> None:
    job = job_item(JobStatus.RUNNING) | attention("job-1", JobStatus.RUNNING, T0, STALL, 32)
    now, writes = T0, 0
    for gap in gaps_ms:  # one commit after each gap
        now += timedelta(milliseconds=gap)
        fresh = refresh_if_stale(job, now, STALL, 32)
        if fresh is not None:
            writes += 1
            job |= fresh
        assert int(job[schema.DUE_INDEX_SK]) >= to_millis(now + STALL / 2), (
            "never close to due while stepping"
        )
    assert writes <= (now - T0) / (STALL / 2) + 1


def test_refresh_if_stale_leaves_parked_and_finished_jobs_alone() -> None:
    for status in (JobStatus.WAITING, JobStatus.SLEEPING, JobStatus.FAILED):
        assert refresh_if_stale(job_item(status), T0, STALL, 32) is None


def test_diagnose_runnable_without_claim_is_a_lost_tick_after_the_stall_window() -> None:
    tail = Tail(job_item(JobStatus.COMPENSATING), event(4, "CompensationCommitted", T0), None)

    early = diagnose(tail, T0 + STALL / 2, SETTINGS)
    late = diagnose(tail, T0 + STALL, SETTINGS)

    assert (early.action, early.next_look) == (Action.MOVE, T0 + STALL)
    assert (late.action, late.reason, late.since, late.sweeps) == (Action.TICK, Reason.TICK_LOST, T0, 1)


def test_diagnose_rescue_ticks_back_off_within_one_episode() -> None:
    swept = T0 + STALL
    job = job_item(JobStatus.RUNNING, **{SWEPT_AT: to_millis(swept), SWEEPS: 2})
    tail = Tail(job, event(3, "StepCommitted", T0), None)

    waiting = diagnose(tail, swept + STALL, SETTINGS)  # the second rescue waits 2 x stall_after
    again = diagnose(tail, swept + 2 * STALL, SETTINGS)
    new_episode = diagnose(
        Tail(job, event(9, "StepCommitted", swept + STALL), None), swept + 3 * STALL, SETTINGS
    )

    assert (waiting.action, waiting.reason) == (Action.WAIT, Reason.TICK_LOST)
    assert (again.action, again.sweeps) == (Action.TICK, 3)
    assert (new_episode.action, new_episode.sweeps) == (Action.TICK, 1), "progress since: counts restart"


def test_diagnose_live_claim_moves_but_a_claim_renewed_past_the_step_limit_is_no_commit() -> None:
    claim = {"seq": 4, "state": "CLAIMED", "worker_id": "w-2", "fence": 2, "claimed_at": to_millis(T0)}
    now = T0 + timedelta(minutes=3)
    held = Tail(
        job_item(JobStatus.RUNNING), event(3, "StepCommitted", T0), claim | {"lease_until": to_millis(now)}
    )
    late = T0 + SETTINGS.step_timeout + SETTINGS.lease + timedelta(seconds=1)
    hung = Tail(
        job_item(JobStatus.RUNNING), event(3, "StepCommitted", T0), claim | {"lease_until": to_millis(late)}
    )

    assert (diagnose(held, now, SETTINGS).action, diagnose(held, now, SETTINGS).next_look) == (
        Action.MOVE,
        now + STALL,
    )
    finding = diagnose(hung, late, SETTINGS)
    assert (finding.action, finding.reason) == (Action.WAIT, Reason.NO_COMMIT)
    assert finding.evidence["worker_id"] == "w-2" and finding.evidence["fence"] == 2


def test_diagnose_parked_on_a_signal_leaves_the_index_and_a_due_timer_is_routine() -> None:
    wait = Tail(job_item(JobStatus.WAITING), event(2, "WaitStarted", T0, detail='{"signal": "go"}'), None)
    fire_at = T0 + timedelta(hours=1)
    timer = Tail(
        job_item(JobStatus.SLEEPING),
        event(2, "TimerStarted", T0, detail=f'{{"fire_at": "{fire_at.isoformat()}"}}'),
        None,
    )

    parked = diagnose(wait, T0 + timedelta(days=30), SETTINGS)
    before, at = diagnose(timer, fire_at - timedelta(seconds=1), SETTINGS), diagnose(timer, fire_at, SETTINGS)

    assert (parked.action, parked.next_look, parked.reason) == (Action.MOVE, None, None)
    assert (before.action, before.next_look) == (Action.MOVE, fire_at)
    assert (at.action, at.reason) == (Action.TICK, Reason.TIMER_DUE)
    assert not at.stuck(fire_at, STALL) and at.stuck(fire_at + STALL, STALL)
