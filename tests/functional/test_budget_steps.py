"""``Budget(max_steps=...)``: the step past the budget is not run; the job fails (or catches it)."""

from __future__ import annotations

from aetheris import App, EventType, JobContext, JobStatus, StepContext
from aetheris.budget import Budget, BudgetExceeded
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls


def test_step_past_max_steps_is_not_run_and_fails_the_job() -> None:
    calls = Calls()
    app = App("step-budget")

    def work(sctx: StepContext, n: int) -> int:
        calls.step(sctx.name)
        return n

    @app.job("runaway", budget=Budget(max_steps=3))
    def runaway(ctx: JobContext, _: None) -> int:
        return sum(ctx.step(work, n, name=f"s{n}") for n in range(10))

    @app.job("stops_itself", budget=Budget(max_steps=2))
    def stops_itself(ctx: JobContext, _: None) -> str:
        done = []
        try:
            for n in range(10):
                done.append(ctx.step(work, n, name=f"t{n}"))
        except BudgetExceeded:
            return f"stopped after {len(done)}"
        return "never"

    with LocalRuntime(app) as local:
        failed = local.wait(local.start("runaway"))
        failures = [e for e in local.events(failed.job_id) if e.type is EventType.STEP_FAILED]
        caught = local.wait(local.start("stops_itself"))
        report = local.replay(failed.job_id)

    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.type == "aetheris.budget.BudgetExceeded" and "max_steps" in failed.error.message
    assert [calls.steps[f"s{n}"] for n in range(5)] == [1, 1, 1, 0, 0]
    assert len(failures) == 1 and failures[0].name == "s3"
    assert caught.status is JobStatus.COMPLETED and caught.result == "stopped after 2"
    assert report.consistent


def test_max_steps_raised_twice_counts_the_same_on_a_sticky_worker_and_on_cold_ones() -> None:
    """The settled-step count and the raised budget are kept up across a sticky job's ticks (not
    walked again per step); a worker that never saw the job, replaying from the top, must agree."""
    for sticky in (64, 0):
        calls = Calls()
        app = App("step-budget-raised")

        def work(sctx: StepContext, n: int, calls: Calls = calls) -> int:
            calls.step(sctx.name)
            return n

        @app.job("stepwise", budget=Budget(max_steps=2, on_exceeded="wait", raise_signal="more"))
        def stepwise(ctx: JobContext, _: None) -> int:
            return sum(ctx.step(work, n, name=f"s{n}") for n in range(5))

        with LocalRuntime(app, workers=1, overrides={"sticky_jobs": sticky}) as local:
            job = local.start("stepwise")
            local.run_until_idle()
            first = local.get(job)
            local.signal(job, "more", {"max_steps": 4})
            local.run_until_idle()
            second = local.get(job)
            local.signal(job, "more", {"max_steps": 5})
            done = local.wait(job)
            report = local.replay(job)

        assert first.status is JobStatus.WAITING and first.waiting_for == "more", sticky
        assert second.status is JobStatus.WAITING, sticky
        assert done.status is JobStatus.COMPLETED and done.result == 10, sticky
        assert [calls.steps[f"s{n}"] for n in range(5)] == [1, 1, 1, 1, 1], sticky
        assert report.consistent, sticky
