"""Races between workers on real DynamoDB/SQS (moto): duplicate ticks, zombies, replay."""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from datetime import timedelta
from pathlib import Path
from typing import Any

from aetheris import App, EffectSemantics, EventType, JobContext, JobStatus, StepContext, hosting
from aetheris.handlers.worker import handler
from aetheris.testing import LocalRuntime, replay
from aetheris_infra.lambda_events import LocalLambdaContext, sqs_event
from tests.functional.jobs import Calls, build_app

DEADLINE = 10.0  # seconds any thread handshake may take before the test fails


def receive_one(local: LocalRuntime) -> dict[str, Any]:
    response = local.sqs.receive_message(
        QueueUrl=local.stack.step_queue_url, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"]
    )
    (message,) = response["Messages"]
    return message


def deliver(local: LocalRuntime, worker: int, message: dict[str, Any]) -> dict[str, Any]:
    """Call the real worker handler, as worker ``worker``, with a one-record SQS event."""
    event = sqs_event([message], local.sources[worker].queue_arn, "us-east-1")
    with hosting.bound(local.runtimes[worker]):
        return handler(event, LocalLambdaContext())  # type: ignore[no-any-return]


def gated_app(calls: Calls, entered: threading.Event, gate: threading.Event) -> App:
    app = App("gated")

    def call_api(key: str) -> str:
        number = calls.effect("api", key)
        if number == 1:  # the first caller is held inside the effect until the test opens the gate
            entered.set()
            assert gate.wait(DEADLINE), "the test never opened the gate"
        return f"answer-{number}"

    def ask(sctx: StepContext) -> str:
        calls.step("ask")
        return sctx.tool("api", call_api, sctx.idempotency_key("api"))

    @app.job("gated")
    def gated(ctx: JobContext, _: None) -> str:
        return ctx.step(ask)

    return app


def test_same_tick_delivered_twice_concurrently_runs_the_step_once() -> None:
    calls, entered, gate = Calls(), threading.Event(), threading.Event()
    with LocalRuntime(gated_app(calls, entered, gate), server=True) as local, ThreadPoolExecutor(2) as pool:
        job_id = local.start("gated", None)
        message = receive_one(local)
        start = threading.Barrier(2)

        def race(worker: int) -> dict[str, Any]:
            start.wait(DEADLINE)
            return deliver(local, worker, message)

        futures = [pool.submit(race, 0), pool.submit(race, 1)]
        done, _ = wait(futures, timeout=DEADLINE, return_when=FIRST_COMPLETED)
        assert done, "neither delivery finished"
        gate.set()
        answers = [f.result(timeout=DEADLINE) for f in futures]
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=message["ReceiptHandle"])
        view = local.wait(job_id)
        events = local.events(job_id)

    assert all(a == {"batchItemFailures": []} for a in answers), "both deliveries are acknowledged"
    assert calls.steps["ask"] == 1 and calls.effects["api"] == 1
    assert sum(1 for e in events if e.type is EventType.STEP_COMMITTED) == 1
    assert view.status is JobStatus.COMPLETED and view.result == "answer-1"


def test_zombie_whose_lease_expired_cannot_record_or_commit() -> None:
    calls, entered, gate = Calls(), threading.Event(), threading.Event()
    with LocalRuntime(gated_app(calls, entered, gate), server=True) as local, ThreadPoolExecutor(1) as pool:
        job_id = local.start("gated", None)
        message = receive_one(local)
        zombie = pool.submit(deliver, local, 0, message)  # worker A: stalls inside the effect
        assert entered.wait(DEADLINE)

        local.faults.heartbeats_paused = True  # A's process is paused: its heartbeat too
        local.clock.advance(timedelta(minutes=5))  # A's lease runs out while it is paused
        redelivered = dict(message, Attributes={**message["Attributes"], "ApproximateReceiveCount": "2"})
        assert deliver(local, 1, redelivered) == {"batchItemFailures": []}  # worker B takes over
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=message["ReceiptHandle"])
        view = local.wait(job_id)  # B (and whoever follows) finishes the job

        gate.set()  # A wakes up with its late result
        assert zombie.result(timeout=DEADLINE) == {"batchItemFailures": []}, "A is fenced out and stops"
        events = local.events(job_id)
        (effect,) = local.runtimes[0].effects(job_id)

    (commit,) = [e for e in events if e.type is EventType.STEP_COMMITTED]
    assert commit.worker_id == "local-worker-2" and commit.fence == 2
    assert commit.reclaimed_from == "local-worker-1"
    assert view.result == "answer-2", "the log holds B's result; A's late 'answer-1' never appears"
    assert all("answer-1" not in (e.result or "") for e in events)
    assert len(set(calls.keys["api"])) == 1 and calls.effects["api"] == 2
    assert effect["state"] == "RECORDED" and effect["worker_id"] == "local-worker-2"
    assert effect["result"] == '"answer-2"'


def test_at_most_once_zombie_cannot_record_after_its_outcome_was_ruled_unknown() -> None:
    calls, entered, gate = Calls(), threading.Event(), threading.Event()
    app = App("gated-amo")

    def charge_api(key: str) -> str:
        number = calls.effect("charge", key)
        entered.set()
        assert gate.wait(DEADLINE), "the test never opened the gate"
        return f"charged-{number}"

    def charge(sctx: StepContext) -> str:
        return sctx.tool(
            "charge", charge_api, sctx.idempotency_key("charge"), semantics=EffectSemantics.AT_MOST_ONCE
        )

    @app.job("charge")
    def job(ctx: JobContext, _: None) -> str:
        return ctx.step(charge)

    with LocalRuntime(app, server=True) as local, ThreadPoolExecutor(1) as pool:
        job_id = local.start("charge", None)
        message = receive_one(local)
        zombie = pool.submit(deliver, local, 0, message)  # worker A: inside the charge, paused
        assert entered.wait(DEADLINE)

        local.faults.heartbeats_paused = True  # A's process is paused: its heartbeat too
        local.clock.advance(timedelta(minutes=5))  # A's lease runs out
        redelivered = dict(message, Attributes={**message["Attributes"], "ApproximateReceiveCount": "2"})
        deliver(local, 1, redelivered)  # B takes over: the charge may have happened, it is not retried
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=message["ReceiptHandle"])
        view = local.wait(job_id)

        gate.set()  # A comes back with its result, after the job was told the outcome is unknown
        assert zombie.result(timeout=DEADLINE) == {"batchItemFailures": []}, "A is fenced out and stops"
        (effect,) = local.runtimes[0].effects(job_id)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.EffectOutcomeUnknown"
    assert calls.effects["charge"] == 1
    assert effect["state"] == "UNKNOWN", "A's late record must not contradict the job's verdict"
    assert effect["claimed_by"] == "local-worker-1" and "result" not in effect


def test_replaying_a_completed_log_runs_no_step_body_and_no_tool() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("payment", {"order_id": "o-9", "amount": 12})
        view = local.wait(job_id)
        executed = (dict(calls.steps), dict(calls.effects))
        report = local.replay(job_id)

    assert view.status is JobStatus.COMPLETED
    assert (
        (dict(calls.steps), dict(calls.effects)) == executed == ({"charge": 1, "confirm": 1}, {"charge": 1})
    )
    assert report.consistent and report.reached_end and report.output_matches
    assert report.operations == 3  # charge, confirm, end


def test_replay_of_changed_code_names_the_divergence() -> None:
    calls = Calls()
    original = build_app(calls)
    with LocalRuntime(original) as local:
        job_id = local.start("five_steps", 2)
        local.wait(job_id)
        changed = App("tests")

        def other(sctx: StepContext, n: int) -> int:
            return n

        @changed.job("five_steps")
        def five_steps(ctx: JobContext, count: int) -> list[int]:
            return [ctx.step(other, n, name=f"renamed{n}") for n in range(1, count + 1)]

        local.app = changed
        report = local.replay(job_id)

    assert not report.consistent and report.divergence is not None
    assert report.divergence.position == 0
    assert "step 's1'" in str(report.divergence) and "step 'renamed1'" in str(report.divergence)


def test_exported_history_replays_from_a_file_without_effects(tmp_path: Path) -> None:
    calls = Calls()
    app = build_app(calls)
    with LocalRuntime(app) as local:
        job_id = local.start("payment", {"order_id": "o-5", "amount": 3})
        local.wait(job_id)
        local.export(job_id).dump(tmp_path / "history.json")
    executed = (dict(calls.steps), dict(calls.effects))

    report = replay(app, tmp_path / "history.json")  # no stack at all: moto is gone

    assert report.consistent and report.reached_end and report.output_matches
    assert (dict(calls.steps), dict(calls.effects)) == executed
