"""The trace an SRE reads (``aetheris.trace.load_trace``, ``GET /jobs/{id}/trace``): a crashed attempt
as its own row, retries, the signal under its wait, the compensation linked to its step, tool
inputs redacted, filters, and every ledger state — on a ``LocalRuntime`` (moto, real handlers)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aetheris import (
    App,
    EffectSemantics,
    JobContext,
    JobStatus,
    NonRetryableError,
    RetryPolicy,
    StepContext,
)
from aetheris._store import schema
from aetheris._store.dynamo import to_dynamo
from aetheris.testing import LocalRuntime
from aetheris.trace import Trace, load_trace
from tests.functional.jobs import Calls
from tests.functional.test_api import running_api

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), max_attempts=3)


def order_app(calls: Calls) -> App:
    app = App("ops-trace")
    flaky = {"left": 1}

    def reserve(sctx: StepContext, item: str) -> str:
        calls.step("reserve")
        return f"held {item}"

    def release(sctx: StepContext, item: str) -> str:
        calls.step("release")
        return f"released {item}"

    def charge_api(amount: int, api_key: str) -> str:
        return f"ch_{calls.effect('charge', api_key)}_{amount}"

    def charge(sctx: StepContext, amount: int) -> str:
        return sctx.tool("payments.charge", charge_api, amount, api_key="sk-live-123")

    def notify(sctx: StepContext, who: str) -> str:
        calls.step("notify")
        if flaky["left"] > 0:
            flaky["left"] -= 1
            raise ConnectionError("mail relay reset the connection")
        return f"told {who}"

    @app.job("order")
    def order(ctx: JobContext, item: str) -> str:
        ctx.step(reserve, item, compensate=release)
        ctx.step(charge, 30)
        ctx.step(notify, "ops", retry=RETRY)
        approval: dict[str, Any] = ctx.wait_for_signal("approval")
        if not approval.get("approved"):
            raise NonRetryableError(f"rejected by {approval.get('by')}")
        return "shipped"

    def once(sctx: StepContext) -> str:
        return sctx.tool("bank.transfer", lambda: "sent", semantics=EffectSemantics.AT_MOST_ONCE)

    @app.job("transfer")
    def transfer(ctx: JobContext, _: None) -> str:
        return ctx.step(once)

    return app


def settle(local: LocalRuntime, job_id: str) -> None:
    """Deliver messages, skipping the fake clock to each held tick (the retry's backoff)."""
    while True:
        local.run_until_idle()
        due = local.queue.next_due_in()
        if due is None:
            return
        local.advance(due)


def rejected_order(local: LocalRuntime) -> str:
    """The order job through a crash (after the charge, before its record), a retry and a rejection."""
    local.crash_at("after_effect")  # the charge (the first tool call) is made; its worker dies
    job_id = local.start("order", "seat-4")
    settle(local, job_id)
    local.signal(job_id, "approval", {"approved": False, "by": "dana"}, signal_id="appr-1")
    local.wait(job_id)
    return job_id


def trace_of(local: LocalRuntime, job_id: str, **filters: Any) -> Trace:
    trace = load_trace(local.runtimes[0], job_id, **filters)
    assert trace is not None
    return trace


def test_trace_crash_retry_signal_compensation_shows_each_attempt_with_its_worker_and_fence() -> None:
    calls = Calls()
    with LocalRuntime(order_app(calls)) as local:
        job_id = rejected_order(local)
        trace = trace_of(local, job_id)

    names = [(op.kind.value, op.name, op.state) for op in trace.operations]
    assert names == [
        ("step", "reserve", "committed"),
        ("step", "charge", "committed"),
        ("step", "notify", "committed"),
        ("wait", "approval", "signalled"),
        ("compensate", "undo-reserve", "committed"),
        ("end", "end", "failed"),
    ]
    reserve, charge, notify, wait, undo, _ = trace.operations
    crashed, taken = charge.attempts
    assert (crashed.outcome, crashed.fence, taken.outcome, taken.fence) == ("crashed", 1, "committed", 2)
    assert crashed.worker_id == taken.reclaimed_from and crashed.taken_over_by == taken.worker_id
    assert crashed.ended_because == f"lease expired, taken over by {taken.worker_id}"
    assert crashed.taken_over_at == taken.claimed_at and taken.claimed_at is not None
    assert crashed.attempt == taken.attempt == 1  # a crash uses up no retry
    (effect,) = charge.effects
    assert (effect.claims, effect.state.value) == (2, "RECORDED")
    failed, retried = notify.attempts
    assert (failed.outcome, retried.outcome, failed.attempt, retried.attempt) == ("failed", "committed", 1, 2)
    assert failed.next_attempt_at is not None and "retry scheduled" in failed.ended_because
    assert failed.error is not None and failed.error.type.endswith("ConnectionError")
    assert wait.signal is not None and wait.signal.signal_id == "appr-1"
    assert (undo.compensates, reserve.compensated_by) == (reserve.index, undo.index)
    assert trace.status is JobStatus.FAILED and trace.compensated == ["undo-reserve"]
    assert calls.effects["charge"] == 2


def test_trace_causal_tree_links_takeover_retry_signal_and_compensation() -> None:
    with LocalRuntime(order_app(Calls())) as local:
        trace = trace_of(local, rejected_order(local))

    nodes = {node.id: node for node in trace.causes}
    order = [node.id for node in trace.causes]
    assert trace.causes[0].id == "job" and all(
        order.index(node.parent) < order.index(node.id) for node in trace.causes if node.parent
    )
    takeover = next(n for n in trace.causes if any(link.rel == "took_over" for link in n.links))
    (link,) = takeover.links
    assert nodes[link.to].state == "crashed" and takeover.parent == "op:1"
    retry = next(n for n in trace.causes if any(link.rel == "retries" for link in n.links))
    assert retry.parent == "op:2" and nodes[retry.links[0].to].state == "failed"
    (signal,) = [n for n in trace.causes if n.kind == "signal"]
    assert signal.parent == "op:3" and [(x.rel, x.to) for x in signal.links] == [("released", "op:3")]
    undo = nodes["op:4"]
    assert [(x.rel, x.to) for x in undo.links] == [("undoes", "op:0")]
    (effect,) = [n for n in trace.causes if n.kind == "effect"]
    assert nodes[str(effect.parent)].kind == "attempt" and nodes[str(effect.parent)].state == "committed"


def test_trace_filters_by_operation_and_by_effect() -> None:
    with LocalRuntime(order_app(Calls())) as local:
        job_id = rejected_order(local)
        by_name = trace_of(local, job_id, operation="notify")
        by_index = trace_of(local, job_id, operation="1")
        by_effect = trace_of(local, job_id, effect="payments.charge")
        none = trace_of(local, job_id, effect="no.such.effect")

    assert [op.name for op in by_name.operations] == ["notify"]
    assert by_name.filtered_by == {"operation": "notify"}
    assert {n.parent for n in by_name.causes if n.kind == "attempt"} == {"op:2"}
    assert [op.name for op in by_index.operations] == ["charge"]
    assert [op.name for op in by_effect.operations] == ["charge"]
    assert [n.kind for n in by_effect.causes].count("effect") == 1
    assert none.operations == [] and [n.id for n in none.causes] == ["job"]
    assert by_name.totals == none.totals  # the job's, whatever the filter


def test_trace_tool_input_from_args_preview_is_redacted_and_bounded() -> None:
    with LocalRuntime(order_app(Calls())) as local:
        job_id = rejected_order(local)
        (item,) = [i for i in local.runtimes[0].effects(job_id) if "payments.charge" in i["sk"]]
        # What the engine writes at claim (aetheris._previews.preview_args): here a preview written
        # before "api_key" was a redacted name, so the trace must redact it on the way out.
        preview = '{"args": [30], "kwargs": {"api_key": "sk-live-123", "note": "' + "é" * 3000 + '"}}'
        local.dynamodb.update_item(
            TableName=local.settings.jobs_table,
            Key=to_dynamo({schema.PK: job_id, schema.SK: item["sk"]}),
            UpdateExpression="SET args_preview = :p",
            ExpressionAttributeValues=to_dynamo({":p": preview}),
        )
        full = trace_of(local, job_id, effect="payments.charge")
        cut = trace_of(local, job_id, effect="payments.charge", max_value_bytes=256)

    (effect,) = full.operations[0].effects
    assert effect.input == {"args": [30], "kwargs": {"api_key": "[redacted]", "note": "é" * 3000}}
    (short,) = cut.operations[0].effects
    assert short.input["truncated"] is True and "sk-live" not in short.input["preview"]


def test_api_trace_of_an_at_most_once_effect_ended_unknown_answers_200_with_the_crashed_claimer() -> None:
    with running_api(order_app(Calls())) as api:
        api.local.crash_at("after_effect")  # the transfer may have happened: AT_MOST_ONCE never retries
        job_id = api.start("transfer")
        api.local.wait(job_id)
        status, _, trace = api.call("GET", f"/jobs/{job_id}/trace")

    assert status == 200, trace
    (op, end) = trace["operations"]
    (effect,) = op["effects"]
    assert effect["state"] == "UNKNOWN" and effect["semantics"] == "AT_MOST_ONCE"
    crashed = [a for a in op["attempts"] if a["outcome"] == "crashed"]
    assert [a["worker_id"] for a in crashed] == [effect["claimed_by"]]
    assert trace["status"] == "FAILED" and end["state"] == "failed"
    nodes = {n["id"]: n for n in trace["causes"]}
    effect_node = next(n for n in trace["causes"] if n["kind"] == "effect")
    assert nodes[effect_node["parent"]]["state"] == "crashed"


def test_api_trace_filters_and_unknown_operation_are_answered_not_500() -> None:
    with running_api(order_app(Calls())) as api:
        job_id = api.start("transfer")
        api.local.wait(job_id)
        ok, _, filtered = api.call("GET", f"/jobs/{job_id}/trace?operation=once&effect=bank.transfer")
        odd, _, empty = api.call("GET", f"/jobs/{job_id}/trace?operation=%F0%9F%92%A5&effect=")
        long, _, error = api.call("GET", f"/jobs/{job_id}/trace?operation={'x' * 300}")

    assert ok == 200 and [op["name"] for op in filtered["operations"]] == ["once"]
    assert odd == 200 and empty["operations"] == []
    assert long == 400 and error["error"]["code"] == "invalid_parameter"
