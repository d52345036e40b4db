"""``ctx.continue_as_new(state)``: a job goes on as the same job on a fresh log carrying its state —
on real DynamoDB/SQS/S3 semantics (moto). Every step and tool body counts its real executions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from aetheris import (
    App,
    ContinueAsNewError,
    EffectSemantics,
    EventType,
    JobContext,
    JobStatus,
    StepContext,
)
from aetheris._store import jobs as jobs_module
from aetheris._store import schema
from aetheris._store.jobs import JobStore
from aetheris.testing import LocalRuntime


class Tally(BaseModel):
    count: int = 0
    runs: list[int] = []


def counting_app(
    calls: Counter[str], last_run: int = 3, before_continue: Callable[[int], None] | None = None
) -> App:
    """``tally`` bumps its counter once per run (one step) and continues until run ``last_run``;
    ``before_continue(run)`` is called when a continue is about to run live."""
    app = App("forever")

    def bump(sctx: StepContext, count: int) -> int:
        calls[f"bump-{count}"] += 1
        return count + 1

    @app.job("tally")
    def tally(ctx: JobContext, state: Tally) -> Tally:
        count = ctx.step(bump, state.count)
        state = Tally(count=count, runs=[*state.runs, count])
        if count < last_run:
            if before_continue is not None and not ctx.is_replaying:
                before_continue(count)
            ctx.continue_as_new(state)
        return state

    return app


def test_a_counter_is_carried_over_three_runs_and_each_step_runs_once_per_run() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(counting_app(calls)) as local:
        job = local.start("tally", Tally())
        view = local.wait(job)
        events = local.events(job)
        report = local.replay(job)

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == {"count": 3, "runs": [1, 2, 3]}
    assert view.run == 3
    assert calls == Counter({"bump-0": 1, "bump-1": 1, "bump-2": 1})
    # The log read back is the current run's: it starts at the run's ContinuedAsNew.
    assert [e.type for e in events] == [
        EventType.CONTINUED_AS_NEW,
        EventType.STEP_COMMITTED,
        EventType.JOB_COMPLETED,
    ]
    assert events[0].detail["run"] == 3
    assert report.consistent and report.reached_end and report.output_matches


def _items_read(local: LocalRuntime) -> list[dict[str, Any]]:
    """Every item any Query of the jobs table returns from now on (all workers' clients)."""
    seen: list[dict[str, Any]] = []
    for runtime in local.runtimes:
        client = runtime.services.jobs.table.client

        def heard(parsed: dict[str, Any], **_: Any) -> None:
            seen.extend(parsed.get("Items", []))

        client.meta.events.register("after-call.dynamodb.Query", heard)
    return seen


def _seq_of(raw: dict[str, Any]) -> int | None:
    sk = raw["sk"]["S"]
    return int(sk[len(schema.EVENT_PREFIX) :]) if sk.startswith(schema.EVENT_PREFIX) else None


def long_app(calls: Counter[str], boundary: list[bool]) -> App:
    """Run 1 has ten steps, run 2 four; ``boundary`` is set when run 2's first step runs."""
    app = App("long")

    def work(sctx: StepContext, n: int) -> int:
        calls[f"work-{n}"] += 1
        if n == 20:
            boundary.append(True)
        return n

    @app.job("long")
    def long(ctx: JobContext, run: int) -> int:
        for n in range(10 if run == 1 else 4):
            ctx.step(work, run * 10 + n)
        if run < 2:
            ctx.continue_as_new(run + 1)
        return run

    return app


def test_the_next_runs_ticks_never_read_an_earlier_runs_events() -> None:
    calls: Counter[str] = Counter()
    boundary: list[bool] = []
    with LocalRuntime(long_app(calls, boundary), workers=1) as local:
        read: list[int] = []
        queries: list[int] = []

        def heard(parsed: dict[str, Any], **_: Any) -> None:
            if boundary:
                queries.append(len(parsed.get("Items", [])))
                read.extend(s for s in map(_seq_of, parsed.get("Items", [])) if s is not None)

        local.runtimes[0].services.jobs.table.client.meta.events.register("after-call.dynamodb.Query", heard)
        job = local.start("long", 1)
        view = local.wait(job)
        item = local.runtimes[0].services.jobs.get(job)
        assert item is not None

    run_start = int(item["run_start_seq"])
    assert view.status is JobStatus.COMPLETED and run_start == 11  # after JobCreated and 10 steps
    assert len(queries) >= 3, "run 2's ticks load the job"
    assert all(s > run_start for s in read), f"an earlier run's slots were read: {sorted(read)}"
    assert sum(calls.values()) == 14 and set(calls.values()) == {1}


@pytest.mark.parametrize("cold_page", [100, 4])
def test_a_cold_load_reads_the_current_run_and_at_most_one_page_of_the_earlier_one(
    monkeypatch: pytest.MonkeyPatch, cold_page: int
) -> None:
    # cold_page=4: the current run is longer than a cold load's first page: a second Query reads
    # the rest of it, from its start; cold_page=100: one request reads it all.
    monkeypatch.setattr(jobs_module, "_COLD_PAGE", cold_page)
    calls: Counter[str] = Counter()
    with LocalRuntime(long_app(calls, []), workers=1) as local:
        job = local.start("long", 1)
        local.wait(job)
        table = local.runtimes[0].services.jobs.table
        read: list[int] = []

        def heard(parsed: dict[str, Any], **_: Any) -> None:
            read.extend(s for s in map(_seq_of, parsed.get("Items", [])) if s is not None)

        table.client.meta.events.register("after-call.dynamodb.Query", heard)
        cold = JobStore(table).load(job)  # a worker that never saw the job
        trace = local.trace(job)

    assert cold is not None and [int(e["seq"]) for e in cold.events] == list(range(11, 17))
    assert len([op for op in trace.operations if op.kind == "step"]) == 4, "the trace is the current run"
    earlier = [s for s in read if s < 11]
    # Never the earlier run as such: at most what the first page holds beyond the current run.
    assert len(earlier) <= 2 * max(0, cold_page - 1 - 6), sorted(read)


def test_the_trace_and_status_show_the_current_run_only() -> None:
    app = App("traced")

    def call(sctx: StepContext, run: int) -> str:
        return sctx.tool("lookup", lambda: f"found-{run}")

    @app.job("traced")
    def traced(ctx: JobContext, run: int) -> int:
        ctx.step(call, run)
        if run < 2:
            ctx.continue_as_new(run + 1)
        return run

    with LocalRuntime(app) as local:
        job = local.wait(local.start("traced", 1)).job_id
        trace = local.trace(job)
        from aetheris.handlers.api_models import JobDetail

        detail = JobDetail.read(local.runtimes[0], job)
    assert trace.run == 2 and detail.run == 2
    kinds = [op.kind for op in trace.operations]
    assert kinds == ["continue", "step", "end"], kinds
    assert trace.unmatched_effects == [], "run 1's effects are not this run's"
    assert [e.result for op in trace.operations for e in op.effects if e.kind == "tool"] == ["found-2"]


def test_a_warm_worker_drops_the_earlier_run_from_its_cache() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(counting_app(calls), workers=1) as local:
        job = local.start("tally", Tally())
        local.wait(job)
        known = local.runtimes[0].services.jobs._cache.get(job)
    assert known[0]["type"] == EventType.CONTINUED_AS_NEW.value
    assert [k["seq"] for k in known] == sorted(k["seq"] for k in known)


def signal_app(calls: Counter[str]) -> App:
    """Each run consumes one ``go`` signal, records it, and continues; run 3 ends after its signal."""
    app = App("signals")

    def note(sctx: StepContext, payload: Any) -> Any:
        calls[f"note-{payload}"] += 1
        return payload

    @app.job("listener")
    def listener(ctx: JobContext, seen: list[Any]) -> list[Any]:
        got = ctx.step(note, ctx.wait_for_signal("go"))
        seen = [*seen, got]
        if len(seen) < 3:
            ctx.continue_as_new(seen)
        return seen

    return app


def test_a_signal_consumed_in_one_run_is_not_consumed_again_and_unconsumed_ones_carry_over() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(signal_app(calls)) as local:
        job = local.start("listener", [])
        local.signal(job, "go", "first", signal_id="s1")
        local.signal(job, "go", "second", signal_id="s2")  # arrives in run 1, consumed in run 2
        local.run_until_idle()
        parked = local.get(job)
        local.signal(job, "go", "second", signal_id="s2")  # a duplicate of a consumed signal
        local.run_until_idle()
        still = local.get(job)
        local.signal(job, "go", "third", signal_id="s3")
        view = local.wait(job)

    assert parked.status is JobStatus.WAITING and parked.run == 3, "run 3 waits: two signals, two runs"
    assert still.status is JobStatus.WAITING, "a duplicate of a consumed signal wakes nothing"
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == ["first", "second", "third"]
    assert calls == Counter({"note-first": 1, "note-second": 1, "note-third": 1})


CONTINUE_CRASH_POINTS = ["before_commit", "after_commit", "before_enqueue"]


@pytest.mark.parametrize("point", CONTINUE_CRASH_POINTS)
def test_a_crash_around_the_continue_continues_exactly_once(point: str) -> None:
    calls: Counter[str] = Counter()
    armed: set[int] = set()
    local = LocalRuntime(counting_app(calls, before_continue=lambda run: arm(run)))

    def arm(run: int) -> None:
        if run not in armed:  # the continue of each run dies once there, then is retried
            armed.add(run)
            local.crash_at(point)  # type: ignore[arg-type]

    with local:
        job = local.start("tally", Tally())
        view = local.wait(job, timeout=60)
        events = local.events(job)
    assert [c.point for c in local.crashes] == [point, point]

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == {"count": 3, "runs": [1, 2, 3]}
    assert view.run == 3 and events[0].detail["run"] == 3
    assert calls == Counter({"bump-0": 1, "bump-1": 1, "bump-2": 1})


def test_a_crash_after_the_effect_of_a_runs_step_runs_the_next_run_once() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(counting_app(calls)) as local:
        local.crash_at("after_record", times=2)
        view = local.wait(local.start("tally", Tally()), timeout=60)
    assert view.status is JobStatus.COMPLETED and view.run == 3
    assert calls == Counter({"bump-0": 1, "bump-1": 1, "bump-2": 1})


def test_a_cancel_before_the_continue_ends_the_job_in_its_run() -> None:
    calls: Counter[str] = Counter()
    app = App("cancel-before")

    @app.job("once")
    def once(ctx: JobContext, n: int) -> int:
        ctx.step(lambda sctx: calls.update([f"run-{n}"]))
        ctx.wait_for_signal("next")
        ctx.continue_as_new(n + 1)

    with LocalRuntime(app) as local:
        job = local.start("once", 1)
        local.run_until_idle()
        local.cancel(job)  # parked; the signal that would let it continue comes after the cancel
        local.signal(job, "next", None)
        view = local.wait(job)
    assert view.status is JobStatus.CANCELLED
    assert view.run == 1 and calls == Counter({"run-1": 1})


def test_a_cancel_written_while_the_continue_commits_ends_the_job_at_the_next_runs_start() -> None:
    calls: Counter[str] = Counter()
    app = App("cancel-during")
    local = LocalRuntime(app)

    @app.job("loop")
    def loop(ctx: JobContext, n: int) -> int:
        ctx.step(lambda sctx: calls.update([f"run-{n}"]))
        if n == 2 and not ctx.is_replaying:
            # The continue's tick has loaded the job (no cancel asked); the cancel lands before
            # its commit, which goes through: the next run stops at its first operation.
            local.runtimes[0].cancel(ctx.job_id)
        ctx.continue_as_new(n + 1)

    with local:
        view = local.wait(local.start("loop", 1))
        events = local.events(view.job_id)
    assert view.status is JobStatus.CANCELLED and view.run == 3
    assert calls == Counter({"run-1": 1, "run-2": 1}), "run 3's step never ran"
    assert [e.type for e in events] == [
        EventType.CONTINUED_AS_NEW,
        EventType.CANCEL_REQUESTED,
        EventType.JOB_CANCELLED,
    ]


def test_a_cancel_after_the_continue_ends_the_parked_next_run() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(signal_app(calls)) as local:
        job = local.start("listener", [])
        local.signal(job, "go", "first")
        local.run_until_idle()
        parked = local.get(job)
        local.cancel(job)
        view = local.wait(job)
    assert parked.status is JobStatus.WAITING and parked.run == 2
    assert view.status is JobStatus.CANCELLED and view.run == 2
    assert calls == Counter({"note-first": 1})


class Strict(BaseModel):
    count: int


def test_a_state_the_input_model_rejects_fails_the_job_with_a_clear_error() -> None:
    ticks: Counter[str] = Counter()
    app = App("bad-state")

    @app.job("strict")
    def strict(ctx: JobContext, state: Strict) -> int:
        ctx.step(lambda sctx: ticks.update(["step"]))
        ctx.continue_as_new({"count": "not a number"})

    with LocalRuntime(app) as local:
        view = local.wait(local.start("strict", Strict(count=0)))
        events = local.events(view.job_id)
    assert view.status is JobStatus.FAILED and view.run == 1
    assert view.error is not None and view.error.type.endswith(ContinueAsNewError.__name__)
    assert "cannot be the job's next input" in view.error.message and "count" in view.error.message
    assert ticks == Counter({"step": 1}), "failed once, not in a crash loop"
    assert not any(e.type is EventType.CONTINUED_AS_NEW for e in events)


def test_continue_as_new_inside_a_step_body_fails_the_job_clearly() -> None:
    app = App("in-step")

    @app.job("inside")
    def inside(ctx: JobContext, _: None) -> None:
        ctx.step(lambda sctx: ctx.continue_as_new(None))

    with LocalRuntime(app) as local:
        view = local.wait(local.start("inside", None))
    assert view.status is JobStatus.FAILED and view.run == 1
    assert view.error is not None and "inside a step body" in view.error.message


def test_a_bare_except_around_continue_as_new_cannot_swallow_it() -> None:
    calls: Counter[str] = Counter()
    app = App("swallow")

    @app.job("greedy")
    def greedy(ctx: JobContext, run: int) -> str:
        ctx.step(lambda sctx: calls.update([f"run-{run}"]))
        if run == 1:
            try:
                ctx.continue_as_new(2)
            except:  # noqa: E722 - what the test is about
                return "swallowed"
        return f"ended in run {run}"

    with LocalRuntime(app) as local:
        view = local.wait(local.start("greedy", 1))
    assert view.status is JobStatus.COMPLETED and view.result == "ended in run 2"
    assert view.run == 2 and calls == Counter({"run-1": 1, "run-2": 1})


ODD = {
    "nested": {"a": [1, 2.5, None, True, {"b": []}], "": "empty key"},
    "text": "ünïcødé \u2603 \U0001f600 \x00 quotes\"'",
    "big": "x" * 300_000,  # over the offload threshold: the state goes to S3
    "ints": [0, -1, 2**53],
}


def test_a_nested_odd_and_big_state_is_carried_exactly() -> None:
    app = App("odd")
    seen: list[Any] = []

    @app.job("odd")
    def odd(ctx: JobContext, state: dict[str, Any]) -> int:
        seen.append(state)
        if not state.get("again"):
            ctx.continue_as_new({**ODD, "again": True})
        return len(state["big"])

    with LocalRuntime(app) as local:
        job = local.start("odd", {})
        view = local.wait(job)
        stored = local.runtimes[0].services.jobs.table.get(job, schema.event_sk(int(view.last_seq or 0) - 1))
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == 300_000 and seen[-1] == {**ODD, "again": True}
    assert stored is not None and stored["type"] == EventType.CONTINUED_AS_NEW.value
    assert str(stored["input"]).startswith("s3://") or len(str(stored["input"])) < 300_000


def test_an_at_most_once_tool_at_the_same_position_runs_in_every_run_with_its_own_key() -> None:
    keys: list[str] = []
    app = App("amo")

    def charge(key: str) -> str:
        keys.append(key)
        return "charged"

    def bill(sctx: StepContext) -> str:
        return sctx.tool(
            "charge", charge, sctx.idempotency_key("charge"), semantics=EffectSemantics.AT_MOST_ONCE
        )

    @app.job("biller")
    def biller(ctx: JobContext, run: int) -> int:
        ctx.step(bill)
        if run < 3:
            ctx.continue_as_new(run + 1)
        return run

    with LocalRuntime(app) as local:
        view = local.wait(local.start("biller", 1))
    assert view.status is JobStatus.COMPLETED, view.error
    assert len(keys) == 3 and len(set(keys)) == 3, keys


def test_a_child_started_at_the_same_position_in_two_runs_is_two_children() -> None:
    app = App("kids")

    @app.job("kid")
    def kid(ctx: JobContext, n: int) -> int:
        return n * 10

    @app.job("parent")
    def parent(ctx: JobContext, results: list[int]) -> list[int]:
        results = [*results, ctx.child("kid", len(results) + 1)]
        if len(results) < 2:
            ctx.continue_as_new(results)
        return results

    with LocalRuntime(app) as local:
        view = local.wait(local.start("parent", []))
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == [10, 20]


def test_a_fork_of_a_continued_job_forks_its_current_run() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(counting_app(calls)) as local:
        job = local.start("tally", Tally())
        local.wait(job)
        events = local.events(job)
        step = next(e for e in events if e.type is EventType.STEP_COMMITTED)
        fork = local.fork(job, step.seq)  # run 3's step is copied: the fork only ends
        forked = local.wait(fork)
        retried_at_start = local.fork(job, events[0].seq)  # the run's start: run 3's step runs again
        again = local.wait(retried_at_start)
        with pytest.raises(Exception, match="before the job's current run"):
            local.fork(job, events[0].seq - 1)

    assert forked.status is JobStatus.COMPLETED and forked.result == {"count": 3, "runs": [1, 2, 3]}
    assert again.status is JobStatus.COMPLETED and again.result == {"count": 3, "runs": [1, 2, 3]}
    assert calls == Counter({"bump-0": 1, "bump-1": 1, "bump-2": 2}), "only the re-forked step ran again"


def test_an_earlier_runs_items_are_left_to_expire_when_a_parked_job_is_extended() -> None:
    from tests.functional.test_retention import epoch, expiry, items

    app = App("parked")

    def charge(sctx: StepContext, run: int) -> str:
        return sctx.tool("charge", lambda: f"ch-{run}")

    @app.job("parker")
    def parker(ctx: JobContext, run: int) -> int:
        ctx.step(charge, run)
        if run == 1:
            ctx.continue_as_new(2)
        ctx.wait_for_signal("done")
        return run

    with LocalRuntime(app) as local:
        job_id = local.start("parker", 1)
        local.run_until_idle()
        job = local.runtimes[0].services.jobs.get(job_id)
        assert job is not None and local.get(job_id).status is JobStatus.WAITING
        run_start, op_base = int(job["run_start_seq"]), int(job["run_op_base"])
        extended = []
        for _ in range(8):  # 40 days parked: past the floor, so the sweeper extends the job
            local.clock.advance(timedelta(days=5))
            extended += local.sweep()["extended"]
        horizon = epoch(local.clock.now())
        found = {i["sk"]["S"]: expiry(i) for i in items(local, job_id) if i["table"].endswith("JobsTable")}
        local.signal(job_id, "done")
        view = local.wait(job_id)

    assert extended and view.status is JobStatus.COMPLETED and view.result == 2
    earlier = {sk for sk in found if sk.startswith("EV#") and int(sk[3:]) < run_start}
    earlier |= {sk for sk in found if sk.startswith("FX#") and int(sk[3:].split("-")[0]) < op_base}
    later = {sk for sk in found if sk.startswith(("EV#", "FX#"))} - earlier
    assert any(sk.startswith("FX#") for sk in earlier) and len(earlier) >= 3
    assert later, "run 2 has items"
    # Run 1's items kept their provisional TTL (from 40 days ago); run 2's were extended past it.
    assert max(found[sk] or 0 for sk in earlier) < min(found[sk] or 0 for sk in later)
    assert all((found[sk] or 0) > horizon for sk in later)
