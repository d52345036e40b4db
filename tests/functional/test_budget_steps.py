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
