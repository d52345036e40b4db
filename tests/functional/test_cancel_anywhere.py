"""Cancellation at any moment ends the job CANCELLED after its compensations, exactly once.

Mid-step, during the last step, while parking on a signal, mid-compensation and after recorded
values (``ctx.uuid()`` / ``ctx.now()``): the cancel is committed as the outcome of the operation it
stopped, so replay reaches the same stop at the same place — no divergence, no wedged worker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, JobStatus, StepContext
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls
from tests.functional.test_races import deliver

DEADLINE = 30.0


def saga_app(calls: Calls, gate: dict[str, threading.Event] | None = None) -> App:
    """``book`` reserves three things (each undone by its compensation) and returns a summary.

    With ``gate``, the step named by the gate's key blocks until the test sets ``released``.
    """
    app = App("cancel-anywhere")
    gates = gate or {}

    def reserve(sctx: StepContext, item: str) -> str:
        calls.step(item)
        if item in gates:
            gates["entered"].set()
            assert gates[item].wait(DEADLINE), "the test never released the step"
        return sctx.tool(f"reserve.{item}", lambda: f"{item}-booked")

    def release(sctx: StepContext, item: str) -> None:
        calls.step(f"undo-{item}")
        sctx.tool(f"release.{item}", lambda: None)

    @app.job("book")
    def book(ctx: JobContext, _: None) -> str:
        flight = ctx.step(reserve, "flight", name="flight", compensate=release)
        marker = ctx.uuid()  # a recorded value right before the next step
        ctx.now()
        hotel = ctx.step(reserve, "hotel", name="hotel", compensate=release)
        car = ctx.step(reserve, "car", name="car", compensate=release)
        return f"{flight} {hotel} {car} {marker[:4]}"

    @app.job("book_then_wait")
    def book_then_wait(ctx: JobContext, _: None) -> str:
        flight = ctx.step(reserve, "flight", name="flight", compensate=release)
        approval = ctx.wait_for_signal("approval", timeout=timedelta(days=1))
        return f"{flight} {approval}"

    return app


def assert_cancelled_once(local: LocalRuntime, job_id: str, calls: Calls, undone: list[str]) -> None:
    view = local.get(job_id)
    events = local.events(job_id)
    assert view.status is JobStatus.CANCELLED, (view.status, view.error)
    assert [e.type for e in events].count(EventType.JOB_CANCELLED) == 1
    assert not any(e.type is EventType.JOB_FAILED for e in events)
    for item in undone:
        assert calls.steps[f"undo-{item}"] == 1, f"undo-{item} ran {calls.steps[f'undo-{item}']} times"
    for item in {"flight", "hotel", "car"} - set(undone):
        assert calls.steps[f"undo-{item}"] == 0


def test_cancel_during_the_last_step_ends_cancelled_after_compensations() -> None:
    calls = Calls()
    gate = {"car": threading.Event(), "entered": threading.Event()}
    with LocalRuntime(saga_app(calls, gate), server=True) as local:
        job_id = local.start("book")
        worker = threading.Thread(target=local.run_until_idle, kwargs={"timeout": DEADLINE})
        worker.start()
        assert gate["entered"].wait(DEADLINE)
        local.cancel(job_id)  # lands while the last step runs
        gate["car"].set()
        worker.join(DEADLINE)
        view = local.wait(job_id)
        later = local.runtimes[0].handle_tick(f'{{"job_id": "{job_id}", "seq": 99}}')
        assert_cancelled_once(local, job_id, calls, ["flight", "hotel", "car"])

    assert view.status is JobStatus.CANCELLED
    assert later.value == "stale", "a later tick for the job is answered, never kills its worker"
    assert calls.steps["car"] == 1


def test_cancel_after_recorded_values_in_a_saga_does_not_diverge() -> None:
    calls = Calls()
    gate = {"flight": threading.Event(), "entered": threading.Event()}
    with LocalRuntime(saga_app(calls, gate)) as local:
        job_id = local.start("book")
        gate["flight"].set()
        deliver_one(local)  # flight committed; the next tick asks ctx.uuid(), ctx.now(), then the hotel
        local.cancel(job_id)
        local.wait(job_id)
        assert_cancelled_once(local, job_id, calls, ["flight"])
        report = local.replay(job_id)

    assert report.consistent and report.reached_end, report.divergence
    assert calls.steps["hotel"] == 0


@pytest.mark.parametrize("after_commits", [0, 1, 2, 3])  # 3: all steps done, the end not yet
def test_cancel_at_any_tick_ends_cancelled_exactly_once(after_commits: int) -> None:
    """Cancel after each number of committed operations: each committed step undone once."""
    calls = Calls()
    with LocalRuntime(saga_app(calls)) as local:
        job_id = local.start("book")
        for _ in range(after_commits):
            deliver_one(local)
        local.cancel(job_id)
        view = local.wait(job_id)
        booked = [i for i in ("flight", "hotel", "car") if calls.steps[i] == 1]
        if view.status is JobStatus.CANCELLED:
            assert_cancelled_once(local, job_id, calls, booked)
        report = local.replay(job_id)

    assert view.status is JobStatus.CANCELLED
    assert report.consistent, report.divergence


def deliver_one(local: LocalRuntime) -> bool:
    """Let exactly one step-queue message reach a worker (at most one operation)."""
    local.queue.flush_due()
    response = local.sqs.receive_message(
        QueueUrl=local.stack.step_queue_url, MaxNumberOfMessages=1, MessageSystemAttributeNames=["All"]
    )
    messages = response.get("Messages", [])
    if not messages:
        return False
    answer = deliver(local, 0, dict(messages[0]))
    if not answer["batchItemFailures"]:
        local.sqs.delete_message(
            QueueUrl=local.stack.step_queue_url, ReceiptHandle=messages[0]["ReceiptHandle"]
        )
    return True


def test_cancel_while_the_job_parks_on_a_signal_is_not_lost() -> None:
    """The cancel lands after the worker read the job and before its WaitStarted commit."""
    calls = Calls()
    with LocalRuntime(saga_app(calls)) as local:
        job_id = local.start("book_then_wait")
        log = local.runtimes[0].services.log
        original: Callable[..., Any] = log.commit

        def cancel_then_commit(lease: Any, event: dict[str, Any], *args: Any, **kwargs: Any) -> None:
            if event["type"] == EventType.WAIT_STARTED.value:
                local.cancel(job_id)  # the API's cancel, racing the parking commit
            original(lease, event, *args, **kwargs)

        for rt in local.runtimes:
            rt.services.log.commit = cancel_then_commit  # type: ignore[method-assign]
        view = local.wait(job_id)
        assert_cancelled_once(local, job_id, calls, ["flight"])

    assert view.status is JobStatus.CANCELLED
    assert view.waiting_for is None


def test_cancel_mid_compensation_finishes_the_saga_then_cancels() -> None:
    calls = Calls()
    app = App("cancel-mid-saga")

    def reserve(sctx: StepContext, item: str) -> str:
        calls.step(item)
        return item

    def release(sctx: StepContext, item: str) -> None:
        calls.step(f"undo-{item}")

    def boom(sctx: StepContext) -> None:
        raise ValueError("payment failed")

    @app.job("fails")
    def fails(ctx: JobContext, _: None) -> None:
        for item in ("flight", "hotel", "car"):
            ctx.step(reserve, item, name=item, compensate=release)
        ctx.step(boom, retry=None)

    with LocalRuntime(app) as local:
        job_id = local.start("fails")
        for _ in range(50):  # three steps, boom's attempts, then the first compensation commits
            if not deliver_one(local):
                local.advance(timedelta(seconds=5))
            if calls.steps["undo-car"] == 1:
                break
        assert local.get(job_id).status is JobStatus.COMPENSATING
        local.cancel(job_id)  # mid-saga
        view = local.wait(job_id)
        last = local.events(job_id)[-1]

    assert view.status is JobStatus.CANCELLED
    assert {calls.steps[f"undo-{i}"] for i in ("flight", "hotel", "car")} == {1}
    assert last.detail["original_error"]["type"] == "builtins.ValueError"
