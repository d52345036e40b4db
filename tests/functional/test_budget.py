"""Per-job budgets: the model call that could exceed the budget is not made, and spending is the ledger's.

The model is ``ScriptedConverse`` answering about 300 tokens per call (``max_tokens=300``), so a
call's worst case is about 327 tokens (its prompt plus 300) and what it really uses about 330.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from aetheris import App, JobContext, JobStatus, StepContext, llm
from aetheris.budget import Budget, BudgetExceeded, spend_of
from aetheris.testing import LocalRuntime

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
LONG = "word " * 240  # 1,200 characters: about 300 tokens of answer
model = llm.ScriptedConverse(lambda request: LONG)
undone: list[str] = []


def ask(sctx: StepContext, model_id: str) -> int:
    return llm.converse(sctx, model_id, "Explain.", max_tokens=300, client=model).usage.total_tokens


def reserve(sctx: StepContext, what: str) -> str:
    return what


def release(sctx: StepContext, what: str) -> None:
    undone.append(what)


def _job(app: App, budget: Budget, model_id: str = HAIKU) -> None:
    @app.job("chat", budget=budget)
    def chat(ctx: JobContext, calls: int) -> list[int]:
        ctx.step(reserve, "seat", compensate=release)
        return [ctx.step(ask, model_id, name=f"ask-{n}") for n in range(calls)]


@pytest.fixture(autouse=True)
def fresh() -> None:
    model.requests.clear()
    undone.clear()


def test_budget_call_that_could_exceed_max_tokens_is_not_made_and_the_job_fails_compensated() -> None:
    app = App("budget-tokens")
    _job(app, Budget(max_tokens=800))

    with LocalRuntime(app) as local:
        view = local.wait(local.start("chat", 3))
        spend = spend_of(local.runtimes[0].effects(view.job_id))

    assert view.status is JobStatus.FAILED
    assert view.error is not None and view.error.type == "aetheris.budget.BudgetExceeded"
    assert "tokens" in view.error.message and "not made" in view.error.message
    assert len(model.requests) == 2  # the third call was never sent
    assert spend.calls == 2 and spend.tokens <= 800
    assert undone == ["seat"]  # compensations ran


def test_budget_recorded_call_replayed_after_a_crash_is_not_refused() -> None:
    app = App("budget-replay")
    _job(app, Budget(max_tokens=400))  # one call fits; after it, no second one would

    with LocalRuntime(app) as local:
        local.crash_at("after_record")  # the step re-runs and finds its call recorded
        view = local.wait(local.start("chat", 1))
        spend = spend_of(local.runtimes[0].effects(view.job_id))

    assert view.status is JobStatus.COMPLETED and len(local.crashes) == 1
    assert len(model.requests) == 1 and spend.calls == 1 and view.result == [spend.tokens]


def test_budget_max_cost_refuses_a_call_it_cannot_pay_before_sending_it() -> None:
    app = App("budget-cost")
    _job(app, Budget(max_cost_usd=0.0001))  # 300 output tokens of Haiku cost $0.0012

    with LocalRuntime(app) as local:
        view = local.wait(local.start("chat", 1))

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.budget.BudgetExceeded" and "USD" in view.error.message
    assert model.requests == []


def test_budget_cost_limit_on_a_model_without_price_is_refused() -> None:
    app = App("budget-unpriced")
    _job(app, Budget(max_cost_usd=1.0), model_id="acme.unknown-model-v1")

    with LocalRuntime(app) as local:
        view = local.wait(local.start("chat", 1))

    assert view.status is JobStatus.FAILED and view.error is not None
    assert "price table" in view.error.message and model.requests == []


def test_budget_exceeded_survives_being_stored_and_rebuilt() -> None:
    error = BudgetExceeded("job-1", "tokens", 800, 660, 327)

    rebuilt = type(error)(*error.__reduce__()[1])

    assert str(rebuilt) == str(error) and rebuilt.needed == 327


def _entry(state: str, result: Any, key: str = "k") -> dict[str, Any]:
    return {"state": state, "idempotency_key": key, "result": json.dumps(result)}


def test_spend_of_counts_recorded_model_calls_only() -> None:
    call = {
        "model_id": HAIKU,
        "request": {},
        "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_tokens": 2, "cache_write_tokens": 0},
        "cost_usd": 0.5,
    }
    entries = [
        _entry("RECORDED", call, "a"),
        _entry("RECORDED", {**call, "cost_usd": None, "model_id": "x"}, "b"),
        _entry("CLAIMED", call, "c"),  # called, not recorded: unknown usage, not counted
        _entry("RECORDED", {"tier": "gold"}, "d"),  # an ordinary tool
        {"state": "RECORDED", "idempotency_key": "e", "result": "not json"},
    ]

    spend = spend_of(entries)

    assert (spend.calls, spend.tokens, spend.cost_usd, spend.unpriced_calls) == (2, 34, 0.5, 1)
    assert spend.by_model[HAIKU].cache_read_tokens == 2
