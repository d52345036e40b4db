"""Requests per step: counts the DynamoDB and SQS calls the worker really makes (botocore hooks).

Runs jobs on the embedded stack (moto in-process; the counts, not the timings, are the point) and
prints, per effect-free step and per tool call, the requests by operation, split into what the
worker makes and what the SQS event source mapping makes (receive/delete, billed to you on AWS
too). Writes bench/results/requests_per_step.json.

    .venv/bin/python bench/requests_per_step.py
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from aetheris_infra.offline import use_offline_defaults

use_offline_defaults(POWERTOOLS_METRICS_DISABLED="true")

from aetheris import App, JobContext, StepContext  # noqa: E402
from aetheris.testing import LocalRuntime  # noqa: E402

STEPS = 20
TOOL_CALLS = 10
EVENT_SOURCE_OPS = {
    "ReceiveMessage",
    "DeleteMessageBatch",
    "DeleteMessage",
    "ChangeMessageVisibility",
    "GetQueueAttributes",
}
# us-east-1 on-demand list prices (USD per million): DynamoDB write / read request units, SQS requests.
PRICE_PER_MILLION = {"write_unit": 0.625, "read_unit": 0.125, "sqs_request": 0.40}


def build_app() -> App:
    app = App("bench")

    def plain(sctx: StepContext, n: int) -> int:
        return n

    def echo(value: int) -> int:
        return value

    def with_tools(sctx: StepContext, calls: int) -> int:
        return sum(sctx.tool("echo", echo, i) for i in range(calls))

    @app.job("plain")
    def plain_job(ctx: JobContext, steps: int) -> int:
        return sum(ctx.step(plain, n) for n in range(steps))

    @app.job("tools")
    def tools_job(ctx: JobContext, calls: int) -> int:
        return ctx.step(with_tools, calls)

    return app


def measure(job_type: str, arg: int) -> Counter[str]:
    calls: Counter[str] = Counter()

    def count(model: Any, parsed: dict[str, Any], **_: Any) -> None:
        # An empty receive is the event source polling an idle queue, not work done for a tick.
        if model.name != "ReceiveMessage" or parsed.get("Messages"):
            calls[model.name] += 1
        if model.name == "Query":
            calls["items returned by Query"] += len(parsed.get("Items", []))

    with LocalRuntime(build_app(), workers=1) as local:
        job_id = local.start(job_type, arg)
        for client in (local.dynamodb, local.sqs):
            client.meta.events.register("after-call", count)
        local.run_until_idle()  # these jobs have no timers: idle means finished
        for client in (local.dynamodb, local.sqs):
            client.meta.events.unregister("after-call", count)
        assert local.get(job_id).status.value == "COMPLETED"
    return calls


def split(calls: Counter[str], per: float) -> dict[str, dict[str, float]]:
    worker = {
        op: round(n / per, 3)
        for op, n in sorted(calls.items())
        if op not in EVENT_SOURCE_OPS and n and not op.startswith("items")
    }
    source = {op: round(n / per, 3) for op, n in sorted(calls.items()) if op in EVENT_SOURCE_OPS and n}
    return {"worker": worker, "event_source": source}


def main() -> None:
    plain = measure("plain", STEPS)
    ticks = STEPS + 1  # each step, then the job's end
    zero_tools = measure("tools", 0)
    many_tools = measure("tools", TOOL_CALLS)
    per_tool = Counter({op: many_tools[op] - zero_tools[op] for op in many_tools})

    per_step = split(plain, ticks)
    worker = per_step["worker"]
    # Writes under 1 KB cost 1 unit; a transaction costs 2 per item. Status changes are transactions.
    write_units = worker.get("UpdateItem", 0) + 4 * worker.get("TransactWriteItems", 0)
    read_units = worker.get("Query", 0)  # one consistent Query of a small item collection ≈ 1-2 RRU
    sqs_requests = worker.get("SendMessage", 0) + sum(per_step["event_source"].values())
    cost = (
        write_units * PRICE_PER_MILLION["write_unit"]
        + read_units * PRICE_PER_MILLION["read_unit"]
        + sqs_requests * PRICE_PER_MILLION["sqs_request"]
    )
    results = {
        "steps": STEPS,
        "tool_calls": TOOL_CALLS,
        "per_effect_free_tick": per_step,
        "per_tool_call": split(per_tool, TOOL_CALLS),
        "query_items_per_tick": round(plain["items returned by Query"] / ticks, 2),
        "estimated_storage_and_queue_cost_usd_per_million_ticks": round(cost, 3),
        "note": "event-source receive/delete are per message here (batch size 10 on AWS amortises them); "
        "Lambda request and duration costs are not included",
    }
    print(json.dumps(results, indent=2))
    out = Path(__file__).parent / "results" / "requests_per_step.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
