"""Log segments (``_store/segments.py``): a worker that has not seen a job reads its segments and
only the events after them, and gets exactly the log the events hold — when a segment is missing,
overlapping, written twice, corrupt, from an earlier job under the id, or was never written because
the worker crashed between the commit and the segment's write. Runs of 5 events (not 100) keep the
jobs short; the reader does not depend on the run length."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest.mock import patch

import pytest

from aetheris import App, JobContext, JobStatus, StepContext
from aetheris._engine.faults import SimulatedCrash
from aetheris._store import jobs as jobs_module
from aetheris._store import schema
from aetheris._store.dynamo import Item, Table
from aetheris._store.jobs import JobSnapshot, JobStore
from aetheris._store.segments import OMITTED, encode
from aetheris.events import Event, OpKind
from aetheris.testing import LocalRuntime

RUN = 5  # events per segment in these tests
COLD_PAGE = 8  # a cold load's first page here (newest slots first)
STEPS = 42  # JobCreated, 42 steps, WaitStarted: seqs 0..43, 8 whole runs and 4 more events


def compact_app(ran: Counter[int]) -> App:
    app = App("compact")

    def count(sctx: StepContext, i: int) -> int:
        ran[i] += 1
        return i * i

    @app.job("steps_then_wait")
    def steps_then_wait(ctx: JobContext, n: int) -> int:
        total = sum(ctx.step(count, i) for i in range(n))
        go = ctx.wait_for_signal("go")
        return total + int(go["extra"]) + ctx.step(count, n)

    return app


@contextmanager
def parked_job(ran: Counter[int]) -> Iterator[tuple[LocalRuntime, str]]:
    """A job of ``STEPS`` steps, parked on its signal, its segments written as it went."""
    # A cold load's first page (newest first, ``_COLD_PAGE`` slots) is cut short here, so that this
    # 44-event log is a long one: read through its segments.
    with patch.object(jobs_module, "_COLD_PAGE", COLD_PAGE), LocalRuntime(compact_app(ran)) as local:
        for runtime in local.runtimes:
            runtime.services.jobs.segment_events = RUN
        job_id = local.start("steps_then_wait", STEPS)
        local.run_until_idle(timeout=600)
        assert local.get(job_id).status is JobStatus.WAITING
        yield local, job_id


def table(local: LocalRuntime) -> Table:
    return Table(local.dynamodb, local.stack.jobs_table)  # type: ignore[arg-type]


def stored(local: LocalRuntime, job_id: str, prefix: str) -> list[Item]:
    answer = table(local).query(
        KeyConditionExpression="pk = :job AND begins_with(sk, :p)",
        ExpressionAttributeValues={":job": {"S": job_id}, ":p": {"S": prefix}},
        ConsistentRead=True,
    )
    return answer


def events_as_stored(local: LocalRuntime, job_id: str) -> list[Item]:
    slots = stored(local, job_id, schema.EVENT_PREFIX)
    return [{k: v for k, v in s.items() if k not in OMITTED} for s in slots if s["state"] == "COMMITTED"]


def without_ttl(events: list[Item]) -> list[Item]:
    return [{k: v for k, v in e.items() if k not in OMITTED} for e in events]


class Reads:
    """Items each Query of the jobs table returned (botocore's own answers, counted)."""

    def __init__(self, local: LocalRuntime) -> None:
        self.items: list[int] = []
        local.dynamodb.meta.events.register("after-call.dynamodb.Query", self._count)

    def _count(self, parsed: dict[str, Any], **_: Any) -> None:
        self.items.append(len(parsed.get("Items", [])))


def cold_load(local: LocalRuntime, job_id: str) -> tuple[JobSnapshot, list[int]]:
    """What a worker that never saw the job reads: the snapshot, and the items of each Query."""
    jobs = JobStore(table(local))
    jobs.segment_events = RUN
    reads = Reads(local)
    snapshot = jobs.load(job_id)
    assert snapshot is not None
    return snapshot, reads.items


def put_segment(
    local: LocalRuntime, job_id: str, events: list[Item], job_at: str | None = None, claims: int | None = None
) -> None:
    """A segment of ``events``; ``claims``: the number of events its item says it holds."""
    table(local).put(
        {
            schema.PK: job_id,
            schema.SK: schema.segment_sk(int(events[0]["seq"])),
            "first": int(events[0]["seq"]),
            "last": int(events[0]["seq"]) + (claims or len(events)) - 1,
            "count": claims or len(events),
            "job_at": job_at or str(events_as_stored(local, job_id)[0]["at"]),
            "data": encode(events),
        }
    )


def test_compact_cold_worker_on_a_long_log_reads_segments_then_the_tail_and_replays_right() -> None:
    ran: Counter[int] = Counter()
    with parked_job(ran) as (local, job_id):
        segments = stored(local, job_id, schema.SEGMENT_PREFIX)
        assert [s["first"] for s in segments] == list(range(0, 40, RUN))  # each whole run, once
        snapshot, reads = cold_load(local, job_id)
        # The newest page, the probe (16 items), the 8 segments, then seqs 39..43 and the job
        # item: not 45 items.
        assert reads == [COLD_PAGE, 16, 8, 6]
        assert without_ttl(snapshot.events) == events_as_stored(local, job_id)
        assert [Event.from_item(e) for e in snapshot.events] == [
            Event.from_item(e) for e in events_as_stored(local, job_id)
        ]
        # Every worker forgets the job: the wake-up tick is cold and replays through the segments.
        for runtime in local.runtimes:
            runtime.services.jobs._forget(job_id)
        local.signal(job_id, "go", {"extra": 7})
        view = local.wait(job_id, timeout=600)
        report = local.replay(job_id)
        trace = local.trace(job_id)

    assert view.status is JobStatus.COMPLETED
    assert view.result == sum(i * i for i in range(STEPS)) + 7 + STEPS * STEPS
    assert ran == Counter(range(STEPS + 1)), "no step ran twice: each replayed from the segments"
    assert report.consistent and report.reached_end
    assert len([op for op in trace.operations if op.kind is OpKind.STEP]) == STEPS + 1


def test_compact_missing_segment_is_read_as_events_and_written_back() -> None:
    with parked_job(Counter()) as (local, job_id):
        local.dynamodb.delete_item(
            TableName=local.stack.jobs_table,
            Key={"pk": {"S": job_id}, "sk": {"S": schema.segment_sk(10)}},
        )
        snapshot, reads = cold_load(local, job_id)
        assert without_ttl(snapshot.events) == events_as_stored(local, job_id)
        assert sum(reads) > COLD_PAGE + 16 + 8 + 6  # the chain stops at 10: seqs 16.. read as events
        assert [s["first"] for s in stored(local, job_id, schema.SEGMENT_PREFIX)] == list(range(0, 40, RUN))
        _, reads_again = cold_load(local, job_id)
        assert reads_again == [COLD_PAGE, 16, 8, 6]  # mended: the next cold read is compact again


def test_compact_overlapping_and_twice_written_segments_change_nothing() -> None:
    with parked_job(Counter()) as (local, job_id):
        events = events_as_stored(local, job_id)
        put_segment(local, job_id, events[3:8])  # overlaps 0..4 and 5..9
        put_segment(local, job_id, events[20:25])  # the same segment again
        snapshot, reads = cold_load(local, job_id)
        assert without_ttl(snapshot.events) == events
        assert reads == [COLD_PAGE, 16, 9, 6]


@pytest.mark.parametrize("damage", ["zombie_last", "truncated", "earlier_job"])
def test_compact_segment_that_does_not_check_out_is_not_used(damage: str) -> None:
    with parked_job(Counter()) as (local, job_id):
        events = events_as_stored(local, job_id)
        wrong = [dict(e) for e in events[35:40]]
        wrong[1]["result"] = wrong[-1]["result"] = "666"  # seqs 36 and 39 hold other outcomes
        if damage == "zombie_last":
            put_segment(local, job_id, wrong)  # caught by its last event, which the tail reads again
        elif damage == "truncated":
            put_segment(local, job_id, events[35:39], claims=5)  # says 35..39, holds 35..38
        else:
            # An earlier job's under the same id: its last event happens to match, seq 36 does not.
            earlier = [dict(e) for e in events[35:40]]
            earlier[1]["result"] = "666"
            put_segment(local, job_id, earlier, job_at="2025-01-01T00:00:00+00:00")
        snapshot, _ = cold_load(local, job_id)
        assert without_ttl(snapshot.events) == events
        assert [Event.from_item(e) for e in snapshot.events][-5:] == [Event.from_item(e) for e in events[-5:]]
        if damage == "zombie_last":
            _, reads = cold_load(local, job_id)
            assert reads == [COLD_PAGE, 16, 8, 6]  # the cold read that found it wrote the right one back


def test_compact_crash_between_commit_and_segment_write_loses_nothing() -> None:
    ran: Counter[int] = Counter()
    with patch.object(jobs_module, "_COLD_PAGE", COLD_PAGE), LocalRuntime(compact_app(ran)) as local:
        crashed: list[int] = []
        for runtime in local.runtimes:
            jobs = runtime.services.jobs
            jobs.segment_events = RUN
            write = jobs.segments.write

            def crash_once(job_at: str, run: list[Item], ttl: int, write: Any = write) -> bool:
                if int(run[0]["seq"]) == 10 and not crashed:
                    crashed.append(10)
                    raise SimulatedCrash("after_commit")  # the process dies: the commit stands
                return bool(write(job_at, run, ttl))

            jobs.segments.write = crash_once  # type: ignore[method-assign]
        job_id = local.start("steps_then_wait", STEPS)
        local.run_until_idle(timeout=600)
        assert crashed == [10]
        firsts = [s["first"] for s in stored(local, job_id, schema.SEGMENT_PREFIX)]
        assert 10 not in firsts
        snapshot, _ = cold_load(local, job_id)  # finds the gap, reads the events, writes it
        assert without_ttl(snapshot.events) == events_as_stored(local, job_id)
        assert 10 in [s["first"] for s in stored(local, job_id, schema.SEGMENT_PREFIX)]
        local.signal(job_id, "go", {"extra": 1})
        view = local.wait(job_id, timeout=600)

    assert view.status is JobStatus.COMPLETED
    assert ran == Counter(range(STEPS + 1)), "every step ran once, the crash notwithstanding"


def test_compact_segments_expire_with_the_job_and_are_extended_like_its_other_items() -> None:
    with parked_job(Counter()) as (local, job_id):
        job = table(local).get(job_id, schema.JOB_SK)
        assert job is not None
        segments = stored(local, job_id, schema.SEGMENT_PREFIX)
        assert segments and all(int(s[schema.TTL_ATTRIBUTE]) >= int(job[schema.TTL_FLOOR]) for s in segments)
        later = local.clock.now().replace(year=local.clock.now().year + 1)
        report = local.runtimes[0].services.retention.extend(job, later)
        target = local.runtimes[0].services.retention.lifetime.provisional(later)
        assert report.expired >= len(segments)
        extended = stored(local, job_id, schema.SEGMENT_PREFIX)
        assert all(int(s[schema.TTL_ATTRIBUTE]) >= target for s in extended)


def test_compact_trace_export_and_events_read_from_segments_equal_those_read_from_events() -> None:
    with parked_job(Counter()) as (local, job_id):
        local.signal(job_id, "go", {"extra": 2})
        local.wait(job_id, timeout=600)
        assert stored(local, job_id, schema.SEGMENT_PREFIX)
        for runtime in local.runtimes:
            runtime.services.jobs._forget(job_id)
        compact = (local.trace(job_id), local.export(job_id), local.events(job_id))  # read cold
        for runtime in local.runtimes:
            runtime.services.jobs._forget(job_id)
        for segment in stored(local, job_id, schema.SEGMENT_PREFIX):
            local.dynamodb.delete_item(
                TableName=local.stack.jobs_table, Key={"pk": {"S": job_id}, "sk": {"S": segment[schema.SK]}}
            )
        from_events = (local.trace(job_id), local.export(job_id), local.events(job_id))

    assert compact == from_events


def test_compact_cache_bound_from_settings_is_honoured_by_the_worker() -> None:
    ran: Counter[int] = Counter()
    # Room for one such job's log (~45 events of ~1.3 KB), not two: the second evicts the first.
    with LocalRuntime(compact_app(ran), workers=1, overrides={"event_cache_bytes": 90_000}) as local:
        jobs = local.runtimes[0].services.jobs
        first = local.start("steps_then_wait", STEPS)
        local.run_until_idle(timeout=600)
        assert first in jobs._cache
        second = local.start("steps_then_wait", STEPS)
        local.run_until_idle(timeout=600)

        assert jobs._cache.bytes <= 90_000
        assert second in jobs._cache and first not in jobs._cache
        reads = Reads(local)
        assert jobs.load(first) is not None
        # The evicted job is read cold: its whole log (44 slots and the job item), one request.
        assert reads.items[0] == STEPS + 3, "the evicted job is read cold"


def test_compact_chaos_checker_finds_a_segment_that_disagrees_with_the_log() -> None:
    from aetheris_infra.chaos.check import _loaded, _segment_problems
    from aetheris_infra.chaos.checked import CheckedJob

    with parked_job(Counter()) as (local, job_id):
        scanned = [
            i
            for i in table(local).query(
                **{
                    "KeyConditionExpression": "pk = :job",
                    "ExpressionAttributeValues": {":job": {"S": job_id}},
                    "ConsistentRead": True,
                }
            )
        ]
        events = events_as_stored(local, job_id)
    job = _loaded(CheckedJob(None, job_id), {job_id: scanned})  # type: ignore[arg-type]
    assert len(job.segments) == 8 and _segment_problems(job) == []

    wrong = [dict(e) for e in events[10:15]]
    wrong[2]["result"] = "666"
    for segment in job.segments:
        if segment["first"] == 10:
            segment["data"] = encode(wrong)
    assert _segment_problems(job) == [f"segment {schema.segment_sk(10)} disagrees with the log at seqs [12]"]
