"""Every log line of a tick carries the tick's keys — ``job_id``, ``job_type``, ``seq``, ``attempt``,
``fence``, ``worker_id`` — with the right values, whoever writes it: the worker handler, the engine
(tool retries, a takeover, a failed attempt), the job's ``ctx.logger`` and the step body's
``sctx.logger`` on its own thread, an ``async`` tool on the body's event loop, signal ingest. And a
line of one record never carries another record's keys.

The lines are captured as they are written on Lambda: the handlers' Powertools loggers write JSON
to one stream, and the engine's ``logging`` lines are routed through the worker's
(``_observability.route_engine_logs``). The jobs run on ``LocalRuntime``, whose workers call the
real handlers with real SQS events; the two-job batch is ``events/sqs_step_tick.json``'s shape.
"""

from __future__ import annotations

import io
import json
import logging
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aetheris import App, JobContext, RetryPolicy, StepContext, hosting
from aetheris import _observability as obs
from aetheris.events import EventType, JobStatus
from aetheris.handlers import signals as signals_module
from aetheris.handlers import sweeper as sweeper_module
from aetheris.handlers import worker as worker_module
from aetheris.testing import LocalRuntime
from aetheris_infra.lambda_events import LocalLambdaContext
from worker import app as worker_app

EVENT = Path(__file__).parents[2] / "events" / "sqs_step_tick.json"
SIX = {"job_id", "job_type", "seq", "attempt", "fence", "worker_id"}
# Lines written inside a claimed slot: all six keys, whatever writes them.
IN_SLOT = ("aetheris.job", "aetheris.step", "aetheris.effects", "aetheris.lease")

app = App("logkeys")
calls: Counter[str] = Counter()


async def crm_get(order_id: str) -> dict[str, str]:
    calls["crm.get"] += 1
    if calls["crm.get"] == 1:
        raise ConnectionError("the crm timed out")  # retried by the tool's policy, same attempt
    return {"order_id": order_id}


def fetch(sctx: StepContext, order_id: str) -> dict[str, str]:
    sctx.logger.info("fetching %s", order_id)
    retry = RetryPolicy(max_attempts=3, initial_delay=timedelta(milliseconds=10))
    result: dict[str, str] = sctx.tool("crm.get", crm_get, order_id, retry=retry)
    return result


def charge(sctx: StepContext, order: dict[str, str]) -> str:
    calls["charge"] += 1
    sctx.logger.info("charging %s", order["order_id"])
    if calls["charge"] == 1:
        raise ConnectionError("the card network is down")  # the step's attempt 2 comes later
    return "charged"


@app.job("logs.order")
def order_job(ctx: JobContext, order_id: str) -> str:
    ctx.logger.info("order job running")
    order = ctx.step(fetch, order_id)
    ctx.step(charge, order, retry=RetryPolicy(max_attempts=3, initial_delay=timedelta(seconds=1)))
    approval = ctx.wait_for_signal("approval")
    ctx.logger.info("approved by %s", approval["by"])
    return "done"


def note(sctx: StepContext, text: str) -> str:
    sctx.logger.info("noting %s", text)
    return text


@app.job("logs.note")
def note_job(ctx: JobContext, text: str) -> str:
    ctx.logger.info("note job running")
    return ctx.step(note, text)


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """The handlers' Powertools loggers at DEBUG writing to one stream, the engine routed there."""
    stream = io.StringIO()
    loggers = [worker_module.logger, signals_module.logger, sweeper_module.logger]
    handlers = [(lg.registered_handler, lg.registered_handler.stream) for lg in loggers]  # type: ignore[attr-defined]
    levels = [(lg, lg.log_level) for lg in loggers]
    library = logging.getLogger("aetheris")
    worker_log = logging.getLogger("aetheris.worker")
    before = (library.handlers[:], library.propagate, library.level, worker_log.level)
    for handler, _ in handlers:
        handler.stream = stream  # type: ignore[attr-defined]
    for lg in loggers:
        lg.setLevel("DEBUG")
    worker_log.setLevel(logging.NOTSET)  # the suite quiets it (conftest)
    obs.route_engine_logs(worker_module.logger)
    try:
        yield stream
    finally:
        library.handlers, library.propagate = before[0], before[1]
        library.setLevel(before[2])
        worker_log.setLevel(before[3])
        worker_module.logger.remove_keys(["name"])  # appended by the routing
        for handler, original in handlers:
            handler.stream = original  # type: ignore[attr-defined]
        for lg, level in levels:
            lg.setLevel(level)


def parse(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


def until_waiting(local: LocalRuntime, job_id: str) -> None:
    for _ in range(20):  # bounded: each round delivers what is due, then moves the clock to the next
        local.run_until_idle()
        if local.get(job_id).status is JobStatus.WAITING:
            return
        due = local.queue.next_due_in()
        assert due is not None, f"job is {local.get(job_id).status} and nothing is due"
        local.advance(due)
    raise AssertionError("the job never parked on its signal")


def test_every_line_of_a_job_with_retries_a_takeover_and_a_signal_carries_its_tick_keys(
    json_lines: io.StringIO,
) -> None:
    calls.clear()
    with LocalRuntime(app) as local:
        job_id = local.start("logs.order", "o-17")
        local.crash_at("after_effect")  # crm.get's second call returned: its worker dies unrecorded
        until_waiting(local, job_id)
        local.signal(job_id, "approval", {"by": "ops"})
        assert local.wait(job_id).status is JobStatus.COMPLETED
        events = local.events(job_id)
        workers = {rt.worker_id for rt in local.runtimes}
    lines = [line for line in parse(json_lines) if line.get("service") != "aetheris-sweeper"]
    ours = [line for line in lines if line.get("name") != "aetheris.sweeper"]

    assert calls == Counter({"crm.get": 3, "charge": 2})  # the crash re-ran the tool, once
    fetched = next(e for e in events if e.type is EventType.STEP_COMMITTED and e.name == "fetch")
    charged = next(e for e in events if e.type is EventType.STEP_COMMITTED and e.name == "charge")
    first_charge = next(e for e in events if e.type is EventType.STEP_FAILED and e.name == "charge")
    assert ours and all(line["job_id"] == job_id for line in ours)
    in_slot = []
    for line in ours:
        assert {"job_id", "job_type", "seq"} <= line.keys(), line
        assert line["job_type"] == "logs.order", line
        if line.get("service") == "aetheris-signals":
            assert {"fence", "attempt", "worker_id"}.isdisjoint(line), line  # ingest holds no slot
            continue
        assert line["worker_id"] in workers, line
        if line.get("name") in IN_SLOT or "fence" in line:
            assert line.keys() >= SIX, line
            in_slot.append(line)
    (takeover,) = [line for line in ours if line["message"].startswith("took slot")]
    dead = takeover["reclaimed_from"]
    # What each (seq, fence, attempt, worker) of a line may be: a committed event's, or the dead claim's.
    possible = {(e.seq, e.fence, e.attempt, e.worker_id) for e in events} | {(fetched.seq, 1, 1, dead)}
    for line in in_slot:
        assert (line["seq"], line["fence"], line["attempt"], line["worker_id"]) in possible, line

    assert (takeover["seq"], takeover["fence"]) == (fetched.seq, 2) and fetched.fence == 2
    fetching = [line for line in ours if line["message"] == "fetching o-17"]
    assert [(x["fence"], x["step"], x["attempt"]) for x in fetching] == [(1, "fetch", 1), (2, "fetch", 1)]
    assert fetching[0]["worker_id"] == dead
    (tool_retry,) = [line for line in ours if line["message"].startswith("tool crm.get failed")]
    assert (tool_retry["seq"], tool_retry["fence"], tool_retry["step"], tool_retry["attempt"]) == (
        fetched.seq,
        1,
        "fetch",
        1,
    )  # written on the async tool's event loop, in the step body's thread
    charging = [line for line in ours if line["message"] == "charging o-17"]
    assert [(x["seq"], x["attempt"], x["step"]) for x in charging] == [
        (first_charge.seq, 1, "charge"),
        (charged.seq, 2, "charge"),
    ]
    (failed,) = [line for line in ours if line["message"].startswith("step charge failed")]
    assert (failed["seq"], failed["attempt"], failed["fence"]) == (first_charge.seq, 1, 1)
    # Live before the first step, by the dead tick and the takeover; silent on every later replay.
    running = [line for line in ours if line["message"] == "order job running"]
    assert [(x["seq"], x["attempt"], x["fence"]) for x in running] == [(1, 1, 1), (1, 1, 2)]
    # Written by the tick after the one that consumed the signal: the one that ends the job.
    (approved,) = [line for line in ours if line["message"] == "approved by ops"]
    consumed = next(e for e in events if e.type is EventType.SIGNAL_CONSUMED)
    ended = events[-1]
    assert ended.type is EventType.JOB_COMPLETED
    assert (approved["seq"], approved["attempt"], approved["fence"], approved["worker_id"]) == (
        ended.seq,
        1,
        ended.fence,
        ended.worker_id,
    )
    (ingested,) = [line for line in ours if line["message"] == "signal ingested"]
    assert (ingested["signal"], ingested["outcome"], ingested["seq"]) == ("approval", "woke", consumed.seq)
    handled = [line for line in ours if line["message"] == "tick handled"]
    assert {line["seq"] for line in handled} >= {e.seq for e in events if e.seq > 0}


def batch(*ticks: tuple[str, int]) -> dict[str, Any]:
    """``events/sqs_step_tick.json``'s first record, once per tick, each its own message id."""
    event: dict[str, Any] = json.loads(EVENT.read_text())
    template = event["Records"][0]
    records = []
    for n, (job_id, seq) in enumerate(ticks):
        record = json.loads(json.dumps(template))
        record["messageId"] = f"{template['messageId'][:-2]}{n:02d}"
        record["body"] = json.dumps({"job_id": job_id, "seq": seq})
        records.append(record)
    event["Records"] = records
    return event


def test_lines_of_one_record_never_carry_the_keys_of_the_record_before_it(json_lines: io.StringIO) -> None:
    calls.clear()
    with LocalRuntime(app) as local:
        first = local.start("logs.note", "alpha")
        third = local.start("logs.order", "o-9")
        unknown = "9d8a4c1e-0000-4000-8000-00000000dead"
        event = batch((first, 1), (unknown, 1), (third, 1))
        with hosting.bound(local.runtimes[0]):
            answer = worker_app.handler(event, LocalLambdaContext())
        worker_id = local.runtimes[0].worker_id
    by_job: dict[str, list[dict[str, Any]]] = {}
    for line in parse(json_lines):
        by_job.setdefault(line.get("job_id", "none"), []).append(line)
    message_ids = [r["messageId"] for r in event["Records"]]

    assert answer == {"batchItemFailures": []}
    assert set(by_job) == {first, unknown, third}  # no line of the batch outside a record
    (noting,) = [line for line in by_job[first] if line["message"] == "noting alpha"]
    assert (noting["job_type"], noting["step"], noting["fence"], noting["seq"]) == ("logs.note", "note", 1, 1)
    for line in by_job[first]:
        assert line.keys() >= SIX and line["message_id"] == message_ids[0], line
        assert (line["job_type"], line["worker_id"]) == ("logs.note", worker_id), line
    for line in by_job[unknown]:  # read after the first job's step ran on this very context
        assert {"job_type", "fence", "attempt", "step"}.isdisjoint(line), line
        assert (line["seq"], line["worker_id"], line["message_id"]) == (1, worker_id, message_ids[1])
    assert any(line["message"].startswith("tick for unknown job") for line in by_job[unknown])
    for line in by_job[third]:
        assert line["job_type"] == "logs.order" and line["message_id"] == message_ids[2], line
        assert line.get("step", "fetch") == "fetch", line
    assert any(line["message"] == "fetching o-9" for line in by_job[third])

    from aetheris import _log_context

    assert _log_context.current() == {}  # nothing left for the next invocation of a warm Lambda
