"""Sticky warm jobs (``_engine/sticky.py``): a worker keeps a job's function parked between its
ticks and resumes it — only on the log it left behind; anything else falls back to replay.

Each job counts how often its function is entered from the top (``Entries``): with stickiness a
job advanced by one worker is entered once; every fallback shows up as one more entry. Step
bodies count their real executions: whatever happens, each committed step ran exactly once.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, JobContext, JobStatus, RetryPolicy, StepContext
from aetheris._engine.sticky import StickyJobs
from aetheris.events import EventType
from aetheris.testing import LocalRuntime


class Counts:
    def __init__(self) -> None:
        self.entries: Counter[str] = Counter()  # job function entered from the top, per job type
        self.steps: Counter[str] = Counter()  # real executions of step (and undo) bodies
        self.lock = threading.Lock()

    def enter(self, job: str) -> None:
        with self.lock:
            self.entries[job] += 1

    def ran(self, name: str) -> None:
        with self.lock:
            self.steps[name] += 1


def build(counts: Counts) -> App:
    app = App("sticky-tests")

    def add(sctx: StepContext, n: int) -> int:
        counts.ran(f"add{n}")
        return n

    @app.job("steps")
    def steps(ctx: JobContext, count: int) -> int:
        counts.enter("steps")
        return sum(ctx.step(add, n, name=f"add{n}") for n in range(count))

    @app.job("values")
    def values(ctx: JobContext, count: int) -> list[str]:
        counts.enter("values")
        seen = []
        for n in range(count):
            seen.append(f"{ctx.now().isoformat()}|{ctx.uuid()}")
            ctx.step(add, n, name=f"add{n}")
        return seen

    @app.job("then_wait")
    def then_wait(ctx: JobContext, _: None) -> Any:
        counts.enter("then_wait")
        ctx.step(add, 1, name="add1")
        got = ctx.wait_for_signal("go")
        ctx.step(add, 2, name="add2")
        return got

    def undo(sctx: StepContext, n: int) -> None:
        counts.ran(f"undo{n}")

    def boom(sctx: StepContext) -> None:
        counts.ran("boom")
        raise ValueError("boom")

    @app.job("saga")
    def saga(ctx: JobContext, _: None) -> None:
        counts.enter("saga")
        ctx.step(add, 1, name="add1", compensate=undo)
        ctx.step(add, 2, name="add2", compensate=undo)
        ctx.step(boom, retry=RetryPolicy(max_attempts=1))

    async def slow_add(sctx: StepContext, n: int) -> int:
        counts.ran(f"async{n}")
        await asyncio.sleep(0)
        return n

    @app.job("async_steps")
    def async_steps(ctx: JobContext, count: int) -> int:
        counts.enter("async_steps")
        return sum(ctx.step(slow_add, n, name=f"async{n}") for n in range(count))

    @app.job("logs")
    def logs(ctx: JobContext, count: int) -> None:
        counts.enter("logs")
        for n in range(count):
            ctx.step(add, n, name=f"add{n}")
            ctx.logger.info("after add%s", n)

    @app.job("bare_except")
    def bare_except(ctx: JobContext, count: int) -> int:
        counts.enter("bare_except")
        total = 0
        for n in range(count):
            try:
                total += ctx.step(add, n, name=f"add{n}")
            except:  # noqa: E722 - what a user writes; it must not keep a discarded function alive
                counts.ran("swallowed")
        return total

    return app


def tick(local: LocalRuntime, worker: int = 0) -> None:
    """Deliver one message of the step queue to worker ``worker`` (0-based)."""
    result = local.sources[worker].poll_once()
    assert result.received >= 1 and result.crashed is None, result


def finish(local: LocalRuntime, job_id: str, worker: int = 0, limit: int = 100) -> None:
    for _ in range(limit):
        if local.get(job_id).status.is_terminal:
            return
        tick(local, worker)
    raise AssertionError(f"job {job_id} did not finish in {limit} ticks")


def sticky(local: LocalRuntime, worker: int = 0) -> StickyJobs:
    return local.runtimes[worker].worker.sticky


def test_a_warm_job_enters_its_function_once_and_each_step_runs_once() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        job_id = local.start("steps", 20)
        view = local.wait(job_id)
        entries = counts.entries["steps"]
        report = local.replay(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == sum(range(20))
    assert entries == 1  # replaying from the top: 21 (one per tick)
    assert counts.steps == Counter({f"add{n}": 1 for n in range(20)})
    assert report.consistent and report.reached_end


def test_sticky_off_replays_every_tick() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1, overrides={"sticky_jobs": 0}) as local:
        job_id = local.start("steps", 5)
        assert local.wait(job_id).result == 10
    assert counts.entries["steps"] == 6


def test_values_made_after_a_resume_are_the_new_ticks_and_replay_the_same() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        job_id = local.start("values", 4)
        tick(local)  # values 0 + add0
        local.advance(timedelta(minutes=7))
        finish(local, job_id)
        view = local.get(job_id)
        entries = counts.entries["values"]
        report = local.replay(job_id)

    assert entries == 1
    stamps = [entry.split("|")[0] for entry in view.result]
    assert stamps[0] < stamps[1]  # ctx.now() after the resume is the clock of the tick that asked
    assert len({entry.split("|")[1] for entry in view.result}) == 4
    assert report.consistent and report.output_matches is True


def test_another_worker_committing_in_between_falls_back_to_replay() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=2) as local:
        job_id = local.start("steps", 6)
        tick(local, 0)  # worker 1: add0, parks
        tick(local, 1)  # worker 2: replays, add1, parks
        assert len(sticky(local, 0)) == 1 and len(sticky(local, 1)) == 1
        tick(local, 0)  # worker 1's parked function is behind the log: discarded, replayed
        assert counts.entries["steps"] == 3
        finish(local, job_id, 0)
        view = local.get(job_id)

    assert view.result == 15
    assert counts.entries["steps"] == 3  # worker 1 kept its fresh function for the rest
    assert counts.steps == Counter({f"add{n}": 1 for n in range(6)})


def test_a_discarded_function_ends_its_thread() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=2) as local:
        job_id = local.start("steps", 6)
        tick(local, 0)
        first = next(iter(sticky(local, 0)._parked.values()))
        tick(local, 1)
        tick(local, 0)  # discards the first function
        assert first.thread is not None
        first.thread.join(timeout=5)
        assert not first.thread.is_alive()
        finish(local, job_id, 0)
        assert sticky(local, 0).threads() == 0  # the job ended: nothing left parked
    assert counts.steps == Counter({f"add{n}": 1 for n in range(6)})


def test_a_takeover_of_the_next_slot_falls_back_to_replay() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=2) as local:
        job_id = local.start("steps", 4)
        tick(local, 0)  # add0 committed, worker 1 parks
        local.crash_at("before_commit")
        result = local.sources[1].poll_once()  # worker 2 claims slot 2, runs add1, dies
        assert result.crashed is not None
        local._after_death(result.crashed)  # its lease and its message's visibility pass
        tick(local, 0)  # worker 1 takes slot 2 over: replays instead of resuming
        assert counts.entries["steps"] == 3
        finish(local, job_id, 0)
        view = local.get(job_id)

    assert view.result == 6
    assert counts.steps["add1"] == 2  # the dead worker's attempt, then the takeover's
    assert [counts.steps[f"add{n}"] for n in (0, 2, 3)] == [1, 1, 1]


def test_a_cancel_asked_while_parked_falls_back_and_compensates_once() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        job_id = local.start("saga", None)
        tick(local)  # add1
        tick(local)  # add2; parked
        local.cancel(job_id)
        view = local.wait(job_id)

    assert view.status is JobStatus.CANCELLED
    assert counts.steps == Counter({"add1": 1, "add2": 1, "undo1": 1, "undo2": 1})
    assert counts.entries["saga"] >= 2  # the cancel's tick replayed from the top


def test_an_error_after_a_resume_runs_the_saga_once() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        job_id = local.start("saga", None)
        view = local.wait(job_id)
        report = local.replay(job_id)

    assert view.status is JobStatus.FAILED
    assert counts.steps == Counter({"add1": 1, "add2": 1, "boom": 1, "undo1": 1, "undo2": 1})
    assert report.consistent


def test_a_signal_sent_while_parked_is_consumed_once_with_its_payload() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        job_id = local.start("then_wait", None)
        tick(local)  # add1 committed; parked after it
        local.signal(job_id, "go", {"v": 7})
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == {"v": 7}
    assert counts.steps == Counter({"add1": 1, "add2": 1})
    assert sum(1 for e in events if e.type is EventType.SIGNAL_CONSUMED) == 1


def test_a_fork_of_a_parked_job_runs_on_its_own_log() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        job_id = local.start("steps", 4)
        tick(local)
        tick(local)  # add0, add1 committed; parked
        cut = next(e.seq for e in local.events(job_id) if e.name == "add1")
        fork_id = local.fork(job_id, cut)  # up to add1: the fork runs add2 and add3 itself
        assert local.wait(fork_id).result == 6
        assert local.wait(job_id).result == 6

    assert counts.steps == Counter({"add0": 1, "add1": 1, "add2": 2, "add3": 2})


def test_a_re_registered_job_definition_falls_back_to_the_new_code() -> None:
    counts = Counts()
    app = build(counts)
    with LocalRuntime(app, workers=1) as local:
        job_id = local.start("steps", 4)
        tick(local)
        key = ("steps", "1")
        old = app._jobs[key]

        def reloaded(ctx: JobContext, count: int) -> int:
            counts.enter("reloaded")
            return old.fn(ctx, count)

        app._jobs[key] = replace(old, fn=reloaded)  # what a code reload does to the app
        view = local.wait(job_id)

    assert view.result == 6
    assert counts.entries["reloaded"] == 1  # the new code ran (from the top), the parked one never again
    assert counts.steps == Counter({f"add{n}": 1 for n in range(4)})


def test_lines_of_a_resumed_function_carry_the_tick_it_serves(caplog: pytest.LogCaptureFixture) -> None:
    counts = Counts()
    with (
        caplog.at_level(logging.INFO, logger="aetheris.job"),
        LocalRuntime(build(counts), workers=1) as local,
    ):
        job_id = local.start("logs", 3)
        local.wait(job_id)
        events = local.events(job_id)

    assert counts.entries["logs"] == 1
    lines = [r for r in caplog.records if r.name == "aetheris.job" and r.getMessage().startswith("after")]
    assert [r.getMessage() for r in lines] == ["after add0", "after add1", "after add2"]
    # "after addN" runs in the tick after addN's commit: the one that commits the next operation.
    committed = {e.name: e for e in events if e.type is EventType.STEP_COMMITTED}
    ends = [e for e in events if e.type is EventType.JOB_COMPLETED]
    following = [committed["add1"], committed["add2"], ends[0]]
    assert [(r.seq, r.fence, r.worker_id) for r in lines] == [  # type: ignore[attr-defined]
        (e.seq, e.fence, e.worker_id) for e in following
    ]


def test_parked_functions_are_bounded_per_worker() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1, overrides={"sticky_jobs": 2}) as local:
        jobs = [local.start("steps", 5) for _ in range(4)]
        local.run_until_idle()
        assert len(sticky(local)) <= 2 and sticky(local).threads() <= 2
        views = [local.wait(job) for job in jobs]
        assert sticky(local).threads() == 0

    assert [v.result for v in views] == [10] * 4
    assert counts.steps == Counter({f"add{n}": 4 for n in range(5)})


def test_a_job_whose_log_the_byte_bounded_cache_does_not_keep_is_never_parked() -> None:
    """A parked function holds its job's parsed log: parking a log the event cache refuses (over
    ``event_cache_bytes``) would let parked functions hold more memory than the bound allows."""
    counts = Counts()
    with LocalRuntime(build(counts), workers=1, overrides={"event_cache_bytes": 0}) as local:
        job_id = local.start("steps", 5)
        for _ in range(3):
            tick(local)
            assert len(sticky(local)) == 0
        finish(local, job_id)
        assert local.get(job_id).result == 10
    assert counts.entries["steps"] == 6  # every tick replayed, as with sticky jobs off
    assert counts.steps == Counter({f"add{n}": 1 for n in range(5)})


def test_a_parked_job_whose_log_the_cache_dropped_is_discarded_at_the_next_park() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        local.sources[0].batch_size = 1  # one tick per poll: one job served at a time
        jobs = [local.start("steps", 3), local.start("steps", 3)]
        while len(sticky(local)) < 2:  # both parked, each after a step of its own
            tick(local)
        store = local.runtimes[0].services.jobs
        for job in jobs:  # the cache let both logs go (other jobs' events pushed them out)
            store._cache.forget(job)
        tick(local)  # the job it serves reads its log again and parks; the other one is let go
        assert len(sticky(local)) == 1
        assert all(store.cached(job) for job in sticky(local)._parked)
        for job in jobs:
            finish(local, job)
        assert [local.get(job).result for job in jobs] == [3, 3]
    assert counts.steps == Counter({f"add{n}": 2 for n in range(3)})


def test_a_bare_except_cannot_keep_a_discarded_function_going() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1, overrides={"sticky_jobs": 1}) as local:
        first = local.start("bare_except", 3)
        tick(local)  # first: add0, parked
        second = local.start("async_steps", 1)
        while local.get(second).status is not JobStatus.COMPLETED:
            tick(local)  # the other job's function takes the one place: the first is discarded
        finish(local, first)
        view = local.get(first)

    assert view.result == 3
    assert counts.steps["swallowed"] >= 1  # the discarded function caught what unwound it ...
    assert [counts.steps[f"add{n}"] for n in range(3)] == [1, 1, 1]  # ... and committed nothing


def test_async_step_bodies_under_a_sticky_function() -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=1) as local:
        job_id = local.start("async_steps", 5)
        assert local.wait(job_id).result == 10
    assert counts.entries["async_steps"] == 1
    assert counts.steps == Counter({f"async{n}": 1 for n in range(5)})


@pytest.mark.parametrize("point", ["after_commit", "before_enqueue"])
def test_a_crash_around_the_commit_loses_nothing(point: str) -> None:
    counts = Counts()
    with LocalRuntime(build(counts), workers=2) as local:
        job_id = local.start("steps", 5)
        tick(local, 0)
        local.crash_at(point)  # type: ignore[arg-type]
        view = local.wait(job_id)

    assert view.result == 10 and [c.point for c in local.crashes] == [point]
    assert counts.steps == Counter({f"add{n}": 1 for n in range(5)})
