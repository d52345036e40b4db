"""Budgets per start (``start(..., budget=...)``, ``POST /jobs {budget}``) and raised by a signal
(``Budget(on_exceeded="wait")``): the call that would exceed the budget is not made, the job waits,
and a raise lets the call happen exactly once, whatever crashes in between.

The model is ``ScriptedConverse`` answering about 300 tokens per call (``max_tokens=300``): a call's
worst case is about 327 tokens, what it uses about 330 (see test_budget.py).
"""

from __future__ import annotations

import pytest

from aetheris import App, EventType, JobContext, JobStatus, StepContext, hosting, llm
from aetheris.budget import Budget, spend_of
from aetheris.testing import LocalRuntime
from tests.functional.test_tenants import Caller

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
model = llm.ScriptedConverse(lambda request: "word " * 240)
booked: list[str] = []


def ask(sctx: StepContext, n: int) -> int:
    return llm.converse(sctx, HAIKU, f"Explain {n}.", max_tokens=300, client=model).usage.total_tokens


def book_then_ask(sctx: StepContext, n: int) -> int:
    sctx.tool("desk.book", lambda: booked.append(f"b{n}"))  # recorded before the model call
    return ask(sctx, n)


def build() -> App:
    app = App("budget-raise")

    @app.job("chat")  # no budget of its own: only what a start gives it
    def chat(ctx: JobContext, calls: int) -> list[int]:
        return [ctx.step(ask, n, name=f"ask-{n}") for n in range(calls)]

    @app.job("patient", budget=Budget(max_tokens=400, on_exceeded="wait"))
    def patient(ctx: JobContext, calls: int) -> list[int]:
        return [ctx.step(book_then_ask, n, name=f"ask-{n}") for n in range(calls)]

    @app.job("steps", budget=Budget(max_steps=1, on_exceeded="wait", raise_signal="more-steps"))
    def steps(ctx: JobContext, calls: int) -> list[int]:
        return [ctx.step(ask, n, name=f"ask-{n}") for n in range(calls)]

    return app


@pytest.fixture(autouse=True)
def fresh() -> None:
    model.requests.clear()
    booked.clear()


def test_a_start_budget_overrides_the_job_types_and_is_enforced_the_same_way() -> None:
    with LocalRuntime(build()) as local:
        limited = local.wait(local.start("chat", 3, budget=Budget(max_tokens=800)))
        free = local.wait(local.start("chat", 3))

    assert limited.status is JobStatus.FAILED and limited.budget == Budget(max_tokens=800)
    assert limited.error is not None and limited.error.type == "aetheris.budget.BudgetExceeded"
    assert free.status is JobStatus.COMPLETED and free.budget is None
    assert len(model.requests) == 2 + 3  # the limited job's third call was never sent


def test_post_jobs_takes_a_budget_and_refuses_a_malformed_one() -> None:
    with LocalRuntime(build()) as local:
        hosting.use(local.runtimes[0])
        try:
            caller = Caller(local, None)
            started = caller.call(
                "POST", "/jobs", {"job_type": "chat", "input": 3, "budget": {"max_tokens": 800}}
            )
            local.wait(started[1]["job_id"])
            detail = caller.call("GET", f"/jobs/{started[1]['job_id']}")[1]
            typo = caller.call("POST", "/jobs", {"job_type": "chat", "input": 1, "budget": {"max_tokenz": 5}})
            negative = caller.call(
                "POST", "/jobs", {"job_type": "chat", "input": 1, "budget": {"max_tokens": -1}}
            )
        finally:
            hosting.use(None)

    assert started[0] == 201 and detail["status"] == "FAILED"
    assert detail["budget"]["max_tokens"] == 800
    assert typo[0] == 422 and typo[1]["error"]["code"] == "validation_error"
    assert negative[0] == 422


@pytest.mark.parametrize("crash", [None, "before_commit", "after_commit", "after_effect", "after_record"])
def test_a_blocked_call_waits_for_a_raise_and_is_made_exactly_once(crash: str | None) -> None:
    with LocalRuntime(build()) as local:
        job = local.start("patient", 2)
        local.run_until_idle()
        parked = local.get(job)
        sent_while_parked = len(model.requests)
        if crash is not None:
            local.crash_at(crash)  # type: ignore[arg-type]
        local.signal(job, "budget", {"max_tokens": 2000})
        done = local.wait(job)
        events = local.events(job)
        spend = spend_of(local.runtimes[0].effects(job))
        report = local.replay(job)
        blocked = local.trace(job).operations[1]  # ask-1: blocked, raised, then committed

    assert parked.status is JobStatus.WAITING and parked.waiting_for == "budget"
    assert sent_while_parked == 1  # the second call was not made while the budget could not pay
    assert done.status is JobStatus.COMPLETED
    # The blocked call made once, after the raise; twice only in the AT_LEAST_ONCE window (called, not
    # recorded: the same key again), and then recorded and counted once.
    assert len(model.requests) == (3 if crash == "after_effect" else 2) and spend.calls == 2
    assert booked == ["b0", "b1"]  # the booking recorded before the block was not made again
    raises = [e for e in events if e.type is EventType.SIGNAL_CONSUMED]
    assert [e.detail["budget_raise"] for e in raises] == [{"max_tokens": 2000}]
    assert report.consistent
    assert blocked.state == "committed" and blocked.wait is not None and blocked.wait.signal == "budget"
    assert blocked.signal is not None and blocked.signal.payload == {"max_tokens": 2000}


def test_an_insufficient_raise_parks_the_job_again_and_max_steps_waits_on_its_own_signal() -> None:
    with LocalRuntime(build()) as local:
        job = local.start("patient", 2)
        local.run_until_idle()
        local.signal(job, "budget", {"max_tokens": 401})  # still too little
        local.run_until_idle()
        still = local.get(job)
        local.signal(job, "budget", {"max_tokens": 5000})
        done = local.wait(job)

        stepped = local.start("steps", 2)
        local.run_until_idle()
        waiting = local.get(stepped)
        local.signal(stepped, "more-steps", {"max_steps": 2})
        finished = local.wait(stepped)

    assert still.status is JobStatus.WAITING and done.status is JobStatus.COMPLETED
    assert waiting.status is JobStatus.WAITING and waiting.waiting_for == "more-steps"
    assert finished.status is JobStatus.COMPLETED and len(finished.result) == 2


def test_a_cancel_while_blocked_on_the_budget_cancels_without_the_call() -> None:
    with LocalRuntime(build()) as local:
        job = local.start("patient", 2)
        local.run_until_idle()
        local.cancel(job)
        done = local.wait(job)

    assert done.status is JobStatus.CANCELLED and len(model.requests) == 1
