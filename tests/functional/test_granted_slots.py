"""A commit grants the next slot to the tick it sends: one write per step, the same fencing.

Every test runs the real worker handler on real DynamoDB and SQS (moto) and counts what really
ran: step bodies, tool calls, and the writes on each log slot.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import botocore.client
import pytest

from aetheris import App, EffectSemantics, EventType, JobContext, JobStatus, StepContext
from aetheris._store import schema
from aetheris._store.queue import Tick
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls, build_app
from tests.functional.test_races import DEADLINE, deliver, receive_one

_WRITES = ("UpdateItem", "PutItem")


@contextmanager
def slot_writes() -> Iterator[Counter[str]]:
    """Count the writes on each log slot (``EV#…``), transactions included, made in this process."""
    counted: Counter[str] = Counter()
    original = botocore.client.BaseClient._make_api_call

    def counting(client: Any, operation: str, params: dict[str, Any]) -> Any:
        if operation in _WRITES:
            sk = (params.get("Key") or params.get("Item") or {}).get("sk", {}).get("S", "")
            if sk.startswith("EV#"):
                counted[sk] += 1
        elif operation == "TransactWriteItems":
            for action in params.get("TransactItems", []):
                body = action.get("Update") or action.get("Put") or {}
                sk = (body.get("Key") or body.get("Item") or {}).get("sk", {}).get("S", "")
                if sk.startswith("EV#"):
                    counted[sk] += 1
        return original(client, operation, params)

    botocore.client.BaseClient._make_api_call = counting  # type: ignore[method-assign]
    try:
        yield counted
    finally:
        botocore.client.BaseClient._make_api_call = original  # type: ignore[method-assign]


def slot_item(local: LocalRuntime, job_id: str, seq: int) -> dict[str, Any] | None:
    return local.runtimes[0].services.jobs.table.get(job_id, schema.event_sk(seq))


def gated_app(calls: Calls, gate: threading.Event, entered: threading.Event) -> App:
    """``first`` then ``second``; the first run of ``second`` waits inside for the test's gate, then
    calls an AT_MOST_ONCE tool."""
    app = App("granted")

    def first(sctx: StepContext) -> str:
        calls.step("first")
        return "one"

    def pay(key: str) -> str:
        return f"paid-{calls.effect('pay', key)}"

    def second(sctx: StepContext) -> str:
        calls.step("second")
        if calls.steps["second"] == 1:
            entered.set()
            assert gate.wait(DEADLINE), "the test never opened the gate"
        return str(sctx.tool("pay", pay, sctx.idempotency_key("pay"), semantics=EffectSemantics.AT_MOST_ONCE))

    @app.job("two")
    def two(ctx: JobContext, _: None) -> list[str]:
        return [ctx.step(first), ctx.step(second)]

    return app


def test_every_step_after_the_first_fills_its_slot_with_one_write() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local, slot_writes() as writes:
        job_id = local.start("five_steps", 5)
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == [10, 20, 30, 40, 50]
    assert all(calls.steps[f"s{n}"] == 1 for n in range(1, 6))
    # Slot 0 is the create's; slot 1 is claimed then committed (the create sends no grant); every
    # later slot — steps 2..5 and the end — is created by its commit alone.
    assert writes[schema.event_sk(1)] == 2
    assert [writes[schema.event_sk(seq)] for seq in range(2, 7)] == [1, 1, 1, 1, 1]
    assert [e.fence for e in events[2:]] == [1, 1, 1, 1, 1]


def test_a_tick_without_the_grant_token_leaves_a_running_grant_alone() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls), server=True) as local:
        job_id = local.start("five_steps", 2)
        deliver(local, 0, receive_one(local))  # slot 1: s1 committed; slot 2 granted to its tick
        granted = receive_one(local)
        assert '"grant"' in granted["Body"]
        # A tick for slot 2 that did not come from that commit (a signal's, a sweeper's): dropped.
        forged = {**granted, "Body": Tick(job_id=job_id, seq=2).model_dump_json(exclude_none=True)}
        assert deliver(local, 1, forged) == {"batchItemFailures": []}
        assert slot_item(local, job_id, 2) is None and calls.steps["s2"] == 0
        assert deliver(local, 0, granted) == {"batchItemFailures": []}
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=granted["ReceiptHandle"])
        view = local.wait(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == [10, 20]
    assert calls.steps["s2"] == 1


def test_a_granted_tick_that_dies_is_taken_over_with_fence_2_once_the_grant_runs_out() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls), server=True) as local:
        job_id = local.start("five_steps", 3)
        deliver(local, 0, receive_one(local))  # s1 committed; slot 2 granted
        local.crash_at("before_commit")  # s2's body runs, its worker dies before the commit
        view = local.wait(job_id)
        events = local.events(job_id)
        trace = local.trace(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == [10, 20, 30]
    assert len(local.crashes) == 1
    s2 = next(e for e in events if e.name == "s2")
    assert (s2.fence, s2.reclaimed_from) == (2, "granted tick")
    assert calls.steps == Counter({"s1": 1, "s2": 2, "s3": 1})  # the body ran again after the death
    assert sum(1 for e in events if e.type is EventType.STEP_COMMITTED) == 3
    crashed, taken = next(op for op in trace.operations if op.name == "s2").attempts
    assert (crashed.outcome, crashed.fence, taken.fence) == ("crashed", 1, 2)
    s1 = next(e for e in events if e.name == "s1")
    assert crashed.started_at == s1.at  # the dead holder's span is its grant's: from s1's commit


def test_a_redelivered_granted_tick_waits_while_the_grant_runs() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls), server=True) as local:
        job_id = local.start("five_steps", 2)
        deliver(local, 0, receive_one(local))
        granted = receive_one(local)
        again = {**granted, "Attributes": {**granted["Attributes"], "ApproximateReceiveCount": "2"}}
        answer = deliver(local, 1, again)
        # Its first delivery may still be running: reported failed, so SQS shows it again later.
        assert answer == {"batchItemFailures": [{"itemIdentifier": granted["MessageId"]}]}
        assert slot_item(local, job_id, 2) is None and calls.steps["s2"] == 0
        local.clock.advance(local.settings.lease + timedelta(seconds=1))
        assert deliver(local, 1, again) == {"batchItemFailures": []}
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=granted["ReceiptHandle"])
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED and calls.steps["s2"] == 1
    assert next(e for e in events if e.name == "s2").fence == 2


def test_the_grants_own_tick_come_late_claims_with_fence_2_and_reports_no_crash() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls), server=True) as local:
        job_id = local.start("five_steps", 2)
        deliver(local, 0, receive_one(local))
        granted = receive_one(local)
        local.clock.advance(local.settings.lease + timedelta(seconds=1))  # delivered after its grant
        assert deliver(local, 0, granted) == {"batchItemFailures": []}
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=granted["ReceiptHandle"])
        view = local.wait(job_id)
        events = local.events(job_id)
        trace = local.trace(job_id)

    assert view.status is JobStatus.COMPLETED and calls.steps["s2"] == 1
    s2 = next(e for e in events if e.name == "s2")
    assert (s2.fence, s2.reclaimed_from) == (2, None)
    step = next(op for op in trace.operations if op.name == "s2")
    assert [a.outcome for a in step.attempts] == ["committed"]


def test_a_grant_holder_paused_past_its_grant_cannot_call_or_commit_after_a_takeover() -> None:
    calls, gate, entered = Calls(), threading.Event(), threading.Event()
    with LocalRuntime(gated_app(calls, gate, entered), server=True) as local, ThreadPoolExecutor(1) as pool:
        local.faults.heartbeats_paused = True  # a zombie: its heartbeat never renews
        job_id = local.start("two", None)
        deliver(local, 0, receive_one(local))  # first committed; slot 2 granted
        granted = receive_one(local)
        zombie = pool.submit(deliver, local, 0, granted)
        assert entered.wait(DEADLINE), "the granted tick never started second"
        local.clock.advance(local.settings.lease + timedelta(seconds=1))  # the grant runs out
        # A tick without the grant, as the sweeper sends it.
        rescue = {**granted, "Body": Tick(job_id=job_id, seq=2).model_dump_json(exclude_none=True)}
        assert deliver(local, 1, rescue) == {"batchItemFailures": []}
        gate.set()
        assert zombie.result(timeout=DEADLINE) == {"batchItemFailures": []}  # fenced out, acknowledged
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=granted["ReceiptHandle"])
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == ["one", "paid-1"]
    assert calls.effects["pay"] == 1  # the zombie woke to a lost lease before its call
    second = next(e for e in events if e.name == "second")
    assert (second.fence, second.worker_id) == (2, "local-worker-2")


def test_the_same_granted_tick_delivered_twice_at_once_commits_once_and_pays_once() -> None:
    calls, gate, entered = Calls(), threading.Event(), threading.Event()
    with LocalRuntime(gated_app(calls, gate, entered), server=True) as local, ThreadPoolExecutor(1) as pool:
        job_id = local.start("two", None)
        deliver(local, 0, receive_one(local))
        granted = receive_one(local)
        held = pool.submit(deliver, local, 0, granted)  # the first copy waits inside second
        assert entered.wait(DEADLINE), "the first copy never started second"
        # The duplicate (both copies first deliveries: SQS may hand out a message twice) runs to
        # its commit: a pure step body may run twice, its tool call and its commit happen once.
        assert deliver(local, 1, granted) == {"batchItemFailures": []}
        gate.set()
        assert held.result(timeout=DEADLINE) == {"batchItemFailures": []}
        local.sqs.delete_message(QueueUrl=local.stack.step_queue_url, ReceiptHandle=granted["ReceiptHandle"])
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == ["one", "paid-1"]
    assert calls.steps["second"] == 2 and calls.effects["pay"] == 1
    assert sum(1 for e in events if e.name == "second") == 1


@pytest.mark.parametrize("released", [True, False], ids=["early_tick", "store_error"])
def test_a_granted_slot_given_back_is_claimed_next_with_the_grant_counted(released: bool) -> None:
    from aetheris._store.log import EventLog

    with LocalRuntime(build_app(Calls())) as local:
        log: EventLog = local.runtimes[0].services.log
        job_id = local.start("five_steps", 1)
        lease = log.granted(job_id, 9, "w-a", 1_000, 61_000)
        log.release(lease, None if released else "ClientError: throttled")
        item = slot_item(local, job_id, 9)
        next_lease = log.claim(job_id, 9, "w-b", 2_000, 62_000, grant_span=(1_000, 61_000))

    assert item is not None and (item["state"], item["fence"], item["lease_until"]) == ("CLAIMED", 1, 0)
    assert next_lease.fence == 2
    assert next_lease.abandoned_claims == (0 if released else 1)  # the crash-loop guard's count
