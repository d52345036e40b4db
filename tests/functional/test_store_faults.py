"""Store and delivery faults the chaos runs found, each reduced to a deterministic reproducer.

Every one of these once lost a job or a wake-up: duplicate ticks to a parked job tripping the
crash-loop guard; a wake-up dropped while an idle duplicate held the slot; a claim whose answer was
lost and retried by the client finding itself; a throttled store call under the job function taken
for the job's own error; settings passed by name silently ignored.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aetheris import App, EffectSemantics, JobContext, JobStatus, Settings, hosting
from aetheris._store.queue import Tick
from aetheris.handlers.worker import handler
from aetheris.testing import LocalRuntime
from aetheris_infra.lambda_events import LocalLambdaContext, sqs_event

DEADLINE = 10.0


def waiting_app() -> App:
    app = App("chaos-repro")

    @app.job("waits")
    def waits(ctx: JobContext, _: None) -> str:
        return str(ctx.wait_for_signal("go"))

    return app


def test_duplicate_ticks_to_a_parked_job_do_not_fail_it() -> None:
    with LocalRuntime(waiting_app()) as local:
        job_id = local.start("waits", None)
        local.run_until_idle()
        for _ in range(6):  # six duplicate ticks for the waiting slot: each IDLE (claim, release)
            body = Tick(job_id=job_id, seq=2).model_dump_json()
            local.sqs.send_message(QueueUrl=local.stack.step_queue_url, MessageBody=body)
            local.run_until_idle()
        status = local.get(job_id).status

    assert status is JobStatus.WAITING


def _receive_one(local: LocalRuntime, url: str) -> dict[str, Any]:
    response = local.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"]
    )
    (message,) = response["Messages"]
    local.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return message


def _deliver(local: LocalRuntime, worker: int, message: dict[str, Any]) -> Any:
    with hosting.bound(local.runtimes[worker]):
        return handler(
            sqs_event([message], local.sources[worker].queue_arn, "us-east-1"), LocalLambdaContext()
        )


def test_wake_up_during_an_idle_duplicate_tick_is_not_lost() -> None:
    with LocalRuntime(waiting_app(), server=True) as local, ThreadPoolExecutor(1) as pool:
        job_id = local.start("waits", None)
        local.run_until_idle()
        entered, gate = threading.Event(), threading.Event()
        inbox = local.runtimes[0].services.inbox
        looked = inbox.pending

        def slow_pending(*args: Any) -> Any:
            found = looked(*args)  # worker 1 looked in the inbox: nothing there yet
            entered.set()
            gate.wait(DEADLINE)
            return found

        inbox.pending = slow_pending  # type: ignore[method-assign]
        body = Tick(job_id=job_id, seq=2).model_dump_json()
        local.sqs.send_message(QueueUrl=local.stack.step_queue_url, MessageBody=body)
        duplicate = pool.submit(_deliver, local, 0, _receive_one(local, local.stack.step_queue_url))
        assert entered.wait(DEADLINE)
        local.signal(job_id, "go", "ok")
        signal = _receive_one(local, local.stack.signal_queue_url)
        assert local.runtimes[1].ingest_signal(signal["Body"]) == "woke"
        _deliver(local, 1, _receive_one(local, local.stack.step_queue_url))  # BUSY: acknowledged
        gate.set()
        duplicate.result(DEADLINE)  # IDLE: the slot released, nothing sent
        inbox.pending = looked  # type: ignore[method-assign]
        view = local.wait(job_id, timeout=20)

    assert view.status is JobStatus.COMPLETED


def test_retried_slot_claim_does_not_lose_a_wake_up() -> None:
    with LocalRuntime(waiting_app()) as local:
        job_id = local.start("waits", None)
        local.run_until_idle()
        lost = {"left": 1}

        def lose_claim_answer(
            response: Any, attempts: int, operation: Any, request_dict: Any, **_: Any
        ) -> Any:
            body = request_dict.get("body", b"")
            text = body.decode() if isinstance(body, bytes) else str(body)
            if operation.name == "UpdateItem" and "EV#" in text and "CLAIMED" in text and lost["left"]:
                lost["left"] -= 1
                return 0.001  # the claim was applied; its answer never came back: send it again
            return None

        local.dynamodb.meta.events.register_first("needs-retry.dynamodb", lose_claim_answer)
        local.signal(job_id, "go", "ok")
        view = local.wait(job_id, timeout=20)

    assert view.status is JobStatus.COMPLETED


def test_a_throttled_inbox_query_does_not_fail_the_job() -> None:
    with LocalRuntime(waiting_app()) as local:
        job_id = local.start("waits", None)
        inbox = local.runtimes[0].services.inbox
        looked, throttled = inbox.pending, {"left": 1}

        def throttled_pending(*args: Any) -> Any:
            if throttled["left"]:
                throttled["left"] -= 1
                raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")
            return looked(*args)

        for rt in local.runtimes:
            rt.services.inbox.pending = throttled_pending  # type: ignore[method-assign]
        local.signal(job_id, "go", "ok")  # in the inbox before the wait looks: nothing else can go wrong
        view = local.wait(job_id)

    assert view.status is JobStatus.COMPLETED


def test_settings_accept_lease_and_stall_after_by_name() -> None:
    settings = Settings(lease=timedelta(seconds=3), stall_after=timedelta(seconds=5))

    assert (settings.lease, settings.stall_after) == (timedelta(seconds=3), timedelta(seconds=5))


# A write applied by DynamoDB whose answer never reached the client: botocore sends it again and
# the second try fails its condition against the first. Each write of the loop must know its own.
LOST_ANSWERS = {
    "slot claim": ("UpdateItem", ("EV#", "claim_token")),
    "slot commit": ("UpdateItem", ("EV#", "COMMITTED")),
    "commit with the job item": ("TransactWriteItems", ("COMMITTED",)),
    "effect claim": ("UpdateItem", ("FX#", "claim_token")),
    "effect record": ("UpdateItem", ("FX#", "RECORDED")),
}


@pytest.mark.parametrize("write", sorted(LOST_ANSWERS))
def test_a_write_whose_answer_was_lost_is_recognised_as_ours(write: str) -> None:
    operation_name, markers = LOST_ANSWERS[write]
    calls: list[str] = []
    app = App("lost-answers")

    def pay(sctx: Any, amount: int) -> str:
        key = sctx.idempotency_key("charge")
        return str(
            sctx.tool("charge", lambda: calls.append(key) or key, semantics=EffectSemantics.AT_MOST_ONCE)
        )

    @app.job("pays")
    def pays(ctx: JobContext, amount: int) -> str:
        first = ctx.step(pay, amount)
        ctx.step(pay, amount, name="pay_again")
        return first

    lost = {"left": 1}

    def lose_answer(response: Any, attempts: int, operation: Any, request_dict: Any, **_: Any) -> Any:
        body = request_dict.get("body", b"")
        text = body.decode() if isinstance(body, bytes) else str(body)
        ours = operation.name == operation_name and all(m in text for m in markers)
        if ours and attempts == 1 and lost["left"]:
            lost["left"] -= 1
            return 0.001  # applied; the answer is lost: send it again
        return None

    with LocalRuntime(app) as local:
        local.dynamodb.meta.events.register_first("needs-retry.dynamodb", lose_answer)
        job_id = local.start("pays", 5)
        view = local.wait(job_id, timeout=20)

    assert lost["left"] == 0, f"no {write} answer was lost: the test did not test anything"
    assert view.status is JobStatus.COMPLETED, view
    assert len(calls) == 2 and len(set(calls)) == 2  # each AT_MOST_ONCE effect ran exactly once
