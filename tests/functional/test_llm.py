"""``aetheris.llm.converse``: a model call is one recorded tool call with its usage and cost.

Jobs run on ``LocalRuntime`` (moto, the real worker handler); the model is ``ScriptedConverse``,
which answers in Converse's shapes (usage included), so nothing needs an AWS account. Counting
the requests the client received tells what a real model would have been asked (and billed).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from aetheris import App, JobContext, JobStatus, RetryPolicy, StepContext, llm
from aetheris.budget import spend_of
from aetheris.testing import LocalRuntime

HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
app = App("llm-tests")
model = llm.ScriptedConverse(lambda request: "Lisbon is sunny.")


def ask(sctx: StepContext, question: str) -> dict[str, Any]:
    result = llm.converse(sctx, HAIKU, question, system="Answer briefly.", max_tokens=200, client=model)
    return {"text": result.text, "tokens": result.usage.total_tokens, "cost": result.cost_usd}


@app.job("ask")
def ask_job(ctx: JobContext, question: str) -> dict[str, Any]:
    return ctx.step(ask, question, retry=RetryPolicy(max_attempts=1))


@pytest.fixture(autouse=True)
def fresh_model() -> None:
    model.requests.clear()
    model.throttle_next = 0


def _recorded(local: LocalRuntime, job_id: str) -> list[dict[str, Any]]:
    entries = local.runtimes[0].effects(job_id)
    return [json.loads(e["result"]) for e in entries if e.get("effect") == "llm.converse" and e.get("result")]


def test_converse_records_request_response_usage_stop_reason_latency_and_cost() -> None:
    with LocalRuntime(app) as local:
        job_id = local.start("ask", "Weather in Lisbon?")
        view = local.wait(job_id)
        (record,) = _recorded(local, job_id)

    assert view.status is JobStatus.COMPLETED and view.result["text"] == "Lisbon is sunny."
    usage = record["usage"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    expected = (usage["input_tokens"] * 0.8 + usage["output_tokens"] * 4.0) / 1_000_000
    assert record["cost_usd"] == pytest.approx(expected) and record["prices_as_of"]
    assert record["model_id"] == HAIKU and record["stop_reason"] == "end_turn"
    assert record["request"]["inferenceConfig"] == {"maxTokens": 200}
    assert record["request"]["system"] == [{"text": "Answer briefly."}]
    assert record["response"]["usage"]["inputTokens"] == usage["input_tokens"]
    assert record["latency_ms"] >= 0
    assert view.result["tokens"] == usage["total_tokens"] and view.result["cost"] == record["cost_usd"]


def test_converse_emits_tokens_and_cost_metrics_by_model_once_per_call_made(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with LocalRuntime(app) as local:
        local.crash_at("after_record")  # the replayed step makes no call: no second line
        view = local.wait(local.start("ask", "Weather?"))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"LlmCalls"' in line]

    (line,) = lines
    assert line["model"] == HAIKU and line["service"] == "worker" and line["LlmCalls"] == [1.0]
    assert line["LlmInputTokens"][0] + line["LlmOutputTokens"][0] == view.result["tokens"]
    assert line["LlmCostUsd"] == [view.result["cost"]]
    assert ["model", "service"] in line["_aws"]["CloudWatchMetrics"][0]["Dimensions"]


def test_converse_crash_after_record_asks_once_and_counts_once() -> None:
    with LocalRuntime(app) as local:
        local.crash_at("after_record")
        job_id = local.start("ask", "Weather?")
        view = local.wait(job_id)
        spend = spend_of(local.runtimes[0].effects(job_id))

    assert view.status is JobStatus.COMPLETED and len(local.crashes) == 1
    assert len(model.requests) == 1
    assert spend.calls == 1 and spend.tokens == view.result["tokens"]


def test_converse_crash_after_effect_asks_again_but_records_and_counts_once() -> None:
    with LocalRuntime(app) as local:
        local.crash_at("after_effect")  # asked, not recorded: AT_LEAST_ONCE asks again, same key
        job_id = local.start("ask", "Weather?")
        view = local.wait(job_id)
        spend = spend_of(local.runtimes[0].effects(job_id))

    assert view.status is JobStatus.COMPLETED
    assert len(model.requests) == 2
    assert spend.calls == 1 and spend.tokens == view.result["tokens"]


def test_converse_throttling_is_retried_by_the_retry_policy() -> None:
    model.throttle_next = 2

    with LocalRuntime(app) as local:
        job_id = local.start("ask", "Weather?")
        view = local.wait(job_id)
        records = _recorded(local, job_id)

    assert view.status is JobStatus.COMPLETED
    assert len(model.requests) == 3 and len(records) == 1


weather = App("llm-tools")
TOOLS = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Current weather of a city",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}},
            }
        }
    ]
}


def _agent_model(request: dict[str, Any]) -> Any:
    last = request["messages"][-1]["content"][0]
    if "toolResult" in last:
        return f"It is {last['toolResult']['content'][0]['json']['sky']} in Lisbon."
    return {"name": "get_weather", "input": {"city": "Lisbon"}}


tool_model = llm.ScriptedConverse(_agent_model)
weather_calls: list[str] = []


def _weather(city: str) -> dict[str, str]:
    weather_calls.append(city)
    return {"sky": "sunny"}


def think(sctx: StepContext, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One turn: the model answers; the tools it asks for run as recorded tool calls."""
    result = llm.converse(sctx, HAIKU, messages, tool_config=TOOLS, client=tool_model)
    messages = [*messages, result.message]
    results = [
        {
            "toolResult": {
                "toolUseId": use["toolUseId"],
                "content": [{"json": sctx.tool(use["name"], _weather, **use["input"])}],
            }
        }
        for use in result.tool_uses
    ]
    return [*messages, {"role": "user", "content": results}] if results else messages


@weather.job("chat")
def chat(ctx: JobContext, question: str) -> str:
    messages: list[dict[str, Any]] = [{"role": "user", "content": [{"text": question}]}]
    for turn in range(4):
        messages = ctx.step(think, messages, name=f"turn-{turn}")
        if messages[-1]["role"] == "assistant":
            return str(messages[-1]["content"][0]["text"])
    raise RuntimeError("no answer in four turns")


def test_converse_tool_use_round_trip_runs_the_tool_once_and_answers() -> None:
    with LocalRuntime(weather) as local:
        local.crash_at("after_record", times=2)
        view = local.wait(local.start("chat", "Weather in Lisbon?"))

    assert view.status is JobStatus.COMPLETED and view.result == "It is sunny in Lisbon."
    assert weather_calls == ["Lisbon"]
    assert [r.get("toolConfig") == TOOLS for r in tool_model.requests] == [True, True]
    assert tool_model.requests[1]["messages"][1]["content"][0]["toolUse"]["name"] == "get_weather"


rejecting = App("llm-rejected")


def ask_tool_without_config(sctx: StepContext) -> str:
    scripted = llm.ScriptedConverse(lambda request: {"name": "x", "input": {}})
    return llm.converse(sctx, HAIKU, "hi", client=scripted).text


@rejecting.job("bad")
def bad(ctx: JobContext, _: None) -> str:
    return ctx.step(ask_tool_without_config)


def test_converse_rejected_request_fails_the_job_without_retry() -> None:
    with LocalRuntime(rejecting) as local:
        view = local.wait(local.start("bad"))
        attempts = [e for e in local.trace(view.job_id).operations[0].effects if e.name == "llm.converse"]

    assert view.status is JobStatus.FAILED
    assert view.error is not None and view.error.type == "aetheris.llm.ModelRequestRejected"
    assert "ValidationException" in view.error.message
    assert [effect.claims for effect in attempts] == [1]
