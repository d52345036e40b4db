"""Tool calls are matched to their ledger records by identity (tool name and arguments), never by
position alone: a retry that makes its calls in another order is refused, not served another
call's result."""

from __future__ import annotations

from aetheris import App, EffectState, EventType, JobContext, JobStatus, RetryPolicy, StepContext
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls


def test_retry_calling_a_tool_in_another_order_is_refused_not_given_another_calls_result() -> None:
    calls = Calls()
    orders = [["ana", "bo", "cy"], ["cy", "ana", "bo"]]  # as a set's iteration order may change
    app = App("reordered")

    def send(recipient: str) -> str:
        calls.effect(f"mail:{recipient}", recipient)
        return f"sent to {recipient}"

    def notify(sctx: StepContext) -> list[str]:
        order = orders[min(sctx.attempt, len(orders)) - 1]
        sent = [sctx.tool("mail.send", send, who) for who in order]
        if sctx.attempt == 1:
            raise ConnectionError("the step failed after its calls")
        return sent

    @app.job("notify")
    def job(ctx: JobContext, _: None) -> list[str]:
        return ctx.step(notify, retry=RetryPolicy(max_attempts=3))

    with LocalRuntime(app) as local:
        view = local.wait(local.start("notify"))
        effects = local.runtimes[0].effects(view.job_id)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.EffectMismatch"
    assert "mail.send" in view.error.message and "sort" in view.error.message
    assert {f"mail:{w}": calls.effects[f"mail:{w}"] for w in ("ana", "bo", "cy")} == {
        "mail:ana": 1,
        "mail:bo": 1,
        "mail:cy": 1,
    }, "every recipient served exactly once; nobody twice, nobody given another's receipt"
    assert all(e["state"] == EffectState.RECORDED for e in effects)
    assert all(e.get("args_preview") for e in effects), "the trace can show each call's input"


def test_same_calls_in_the_same_order_reuse_their_records_on_retry() -> None:
    calls = Calls()
    app = App("same-order")

    def send(recipient: str) -> str:
        calls.effect(f"mail:{recipient}", recipient)
        return f"sent to {recipient}"

    def notify(sctx: StepContext) -> list[str]:
        sent = [sctx.tool("mail.send", send, who) for who in sorted({"cy", "ana", "bo"})]
        if sctx.attempt == 1:
            raise ConnectionError("the step failed after its calls")
        return sent

    @app.job("notify")
    def job(ctx: JobContext, _: None) -> list[str]:
        return ctx.step(notify, retry=RetryPolicy(max_attempts=3))

    with LocalRuntime(app) as local:
        view = local.wait(local.start("notify"))
        events = local.events(view.job_id)

    assert view.status is JobStatus.COMPLETED
    assert view.result == ["sent to ana", "sent to bo", "sent to cy"]
    assert all(calls.effects[f"mail:{w}"] == 1 for w in ("ana", "bo", "cy"))
    assert [e.type for e in events].count(EventType.STEP_FAILED) == 1


def test_retry_after_a_failed_call_may_call_the_tool_with_other_arguments() -> None:
    """A failed call holds no result to mis-serve: the next attempt's call (say, with a smaller
    request after a "too large" error) takes its record over."""
    calls = Calls()
    app = App("retry-other-args")

    def quote(size: int) -> str:
        calls.effect(f"quote:{size}", str(size))
        if size > 10:
            raise ValueError("request too large")
        return f"quoted {size}"

    def ask(sctx: StepContext) -> str:
        return sctx.tool("quote", quote, 100 if sctx.attempt == 1 else 5)

    @app.job("ask")
    def job(ctx: JobContext, _: None) -> str:
        return ctx.step(ask, retry=RetryPolicy(max_attempts=3))

    with LocalRuntime(app) as local:
        view = local.wait(local.start("ask"))

    assert view.status is JobStatus.COMPLETED and view.result == "quoted 5"
    assert calls.effects == {"quote:100": 1, "quote:5": 1}
