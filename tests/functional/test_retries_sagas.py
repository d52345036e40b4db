"""Retries with backoff, step timeouts, poison jobs and crash loops, and compensation (saga)."""

from __future__ import annotations

import threading
from datetime import timedelta
from itertools import pairwise
from typing import Any

from aetheris import (
    App,
    EventType,
    JobContext,
    JobStatus,
    NonRetryableError,
    RetryPolicy,
    StepContext,
)
from aetheris._engine.faults import SimulatedCrash
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls


class Declined(NonRetryableError):
    pass


def failed_events(local: LocalRuntime, job_id: str) -> list[Any]:
    return [e for e in local.events(job_id) if e.type is EventType.STEP_FAILED]


def retry_app(calls: Calls, policy: RetryPolicy) -> App:
    app = App("retries")

    def always_fails(sctx: StepContext) -> str:
        calls.step("always_fails")
        raise ConnectionError(f"attempt {sctx.attempt} failed")

    @app.job("poison")
    def poison(ctx: JobContext, _: None) -> str:
        return ctx.step(always_fails, retry=policy)

    def declines(sctx: StepContext) -> str:
        calls.step("declines")
        raise Declined("card declined")

    @app.job("declined")
    def declined(ctx: JobContext, _: None) -> str:
        return ctx.step(declines, retry=policy)

    def lookup(sctx: StepContext) -> str:
        calls.step("lookup")
        raise KeyError("no such customer")

    @app.job("fallback")
    def fallback(ctx: JobContext, _: None) -> str:
        try:
            return ctx.step(lookup, retry=RetryPolicy(max_attempts=1))
        except KeyError as missing:
            return ctx.step(guest, str(missing))

    def guest(sctx: StepContext, why: str) -> str:
        calls.step("guest")
        return f"guest ({why})"

    return app


def test_backoff_schedule_without_jitter_and_poison_job_fails_after_max_attempts() -> None:
    calls = Calls()
    policy = RetryPolicy(max_attempts=4, initial_interval=timedelta(seconds=10), jitter=0)
    with LocalRuntime(retry_app(calls, policy)) as local:
        job_id = local.start("poison", None)
        view = local.wait(job_id)
        failures = failed_events(local, job_id)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "builtins.ConnectionError" and view.error.message == "attempt 4 failed"
    assert calls.steps["always_fails"] == 4
    assert [f.attempt for f in failures] == [1, 2, 3, 4]
    gaps = [(f.next_attempt_at - f.at).total_seconds() for f in failures[:-1] if f.next_attempt_at]
    assert gaps == [10, 20, 40]
    assert failures[-1].next_attempt_at is None
    # each retry ran no earlier than its scheduled time (fake clock)
    assert all(later.started_at >= f.next_attempt_at for f, later in pairwise(failures))


def test_backoff_schedule_with_jitter_stays_within_its_bounds() -> None:
    policy = RetryPolicy(max_attempts=5, initial_interval=timedelta(seconds=8), jitter=0.5)
    with LocalRuntime(retry_app(Calls(), policy), seed=7) as local:
        job_id = local.start("poison", None)
        local.wait(job_id)
        failures = failed_events(local, job_id)

    gaps = [(f.next_attempt_at - f.at).total_seconds() for f in failures if f.next_attempt_at]
    for n, gap in enumerate(gaps):
        base = 8 * 2**n
        assert 0.5 * base <= gap <= 1.5 * base
    assert len(set(gaps)) == len(gaps)


def test_non_retryable_error_fails_the_job_at_once() -> None:
    calls = Calls()
    with LocalRuntime(retry_app(calls, RetryPolicy(max_attempts=5))) as local:
        job_id = local.start("declined", None)
        view = local.wait(job_id)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type.endswith("Declined") and calls.steps["declines"] == 1


def test_job_that_catches_a_step_error_behaves_the_same_on_replay() -> None:
    calls = Calls()
    with LocalRuntime(retry_app(calls, RetryPolicy())) as local:
        job_id = local.start("fallback", None)
        view = local.wait(job_id)
        report = local.replay(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == "guest ('no such customer')"
    assert report.consistent and report.output_matches
    assert calls.steps == {"lookup": 1, "guest": 1}


def test_tool_retries_inside_the_step_reuse_the_idempotency_key() -> None:
    calls = Calls()
    app = App("tools")
    failures = {"left": 2}

    def api(key: str) -> str:
        calls.effect("api", key)
        if failures["left"]:
            failures["left"] -= 1
            raise TimeoutError("upstream timed out")
        return "ok"

    def call(sctx: StepContext) -> str:
        calls.step("call")
        retry = RetryPolicy(max_attempts=3, initial_interval=timedelta(seconds=2), jitter=0)
        return sctx.tool("api", api, sctx.idempotency_key("api"), retry=retry)

    @app.job("tool_retry")
    def tool_retry(ctx: JobContext, _: None) -> str:
        return ctx.step(call)

    with LocalRuntime(app) as local:
        job_id = local.start("tool_retry", None)
        view = local.wait(job_id)
        (effect,) = local.runtimes[0].effects(job_id)

    assert view.result == "ok" and calls.steps["call"] == 1
    assert calls.effects["api"] == 3 and len(set(calls.keys["api"])) == 1
    assert effect["claims"] == 3 and effect["state"] == "RECORDED"


def test_step_timeout_abandons_the_attempt_and_the_retry_completes() -> None:
    calls = Calls()
    app = App("timeouts")
    release = threading.Event()
    refused: list[BaseException] = []

    def api(key: str) -> str:
        calls.effect("api", key)
        return "done"

    def slow(sctx: StepContext) -> str:
        calls.step("slow")
        if sctx.attempt == 1:
            release.wait(10)  # holds the first attempt past its timeout
            try:
                sctx.tool("api", api, "late")
            except BaseException as error:  # noqa: BLE001 - recorded for the assertion below
                refused.append(error)
            return "too late"
        return sctx.tool("api", api, sctx.idempotency_key("api"))

    @app.job("slow")
    def slow_job(ctx: JobContext, _: None) -> str:
        return ctx.step(
            slow, timeout=timedelta(seconds=0.2), retry=RetryPolicy(initial_interval=timedelta(0))
        )

    with LocalRuntime(app) as local:
        job_id = local.start("slow", None)
        view = local.wait(job_id)
        failures = failed_events(local, job_id)
        release.set()
        abandoned_thread = next(t for t in threading.enumerate() if t.name == "step-slow")
        abandoned_thread.join(10)

    assert view.status is JobStatus.COMPLETED and view.result == "done"
    assert len(failures) == 1 and failures[0].error is not None
    assert failures[0].error.type == "aetheris.errors.StepTimeout"
    assert calls.effects["api"] == 1, "the abandoned attempt could not call the tool"
    assert len(refused) == 1 and type(refused[0]).__name__ == "LeaseLost"


def test_worker_crash_loop_ends_the_job_failed_and_reported() -> None:
    app = App("crashy")
    runs = {"n": 0}

    def segfaults(sctx: StepContext) -> str:
        runs["n"] += 1
        raise SimulatedCrash("native crash in the step")

    @app.job("crashy")
    def crashy(ctx: JobContext, _: None) -> str:
        return ctx.step(segfaults)

    with LocalRuntime(app) as local:
        job_id = local.start("crashy", None)
        view = local.wait(job_id, timeout=60)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.WorkerCrashLoop"
    assert runs["n"] == local.settings.max_slot_claims
    assert len(local.crashes) == local.settings.max_slot_claims


def test_a_compensation_that_crashes_its_workers_ends_the_saga_visibly() -> None:
    app = App("crashy-undo")
    undo_runs = {"n": 0}

    def book(sctx: StepContext) -> str:
        return "booked"

    def unbook(sctx: StepContext) -> str:
        undo_runs["n"] += 1
        raise SimulatedCrash("native crash in the compensation")

    def decline(sctx: StepContext) -> str:
        raise Declined("declined")

    @app.job("crashy-undo")
    def job(ctx: JobContext, _: None) -> str:
        ctx.step(book, compensate=unbook)
        return ctx.step(decline)

    with LocalRuntime(app) as local:
        job_id = local.start("crashy-undo", None)
        view = local.wait(job_id, timeout=60)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.CompensationFailed"
    assert "WorkerCrashLoop" in view.error.message or "workers claimed" in view.error.message
    assert undo_runs["n"] == local.settings.max_slot_claims


def test_malformed_tick_reaches_the_step_dlq_after_max_receives() -> None:
    with LocalRuntime(App("empty")) as local:
        local.sqs.send_message(QueueUrl=local.stack.step_queue_url, MessageBody='{"not": "a tick"}')
        local.run_until_idle()
        dead = local.sqs.receive_message(
            QueueUrl=local.stack.step_dlq_url, MessageSystemAttributeNames=["All"]
        )

    (message,) = dead["Messages"]
    assert message["Body"] == '{"not": "a tick"}'
    assert message["Attributes"]["ApproximateReceiveCount"] == "11"  # 10 on the queue, this one here


def saga_app(calls: Calls, fail_undo: str | None = None, crash: dict[str, LocalRuntime] | None = None) -> App:
    app = App("saga")
    order: list[str] = []
    calls.order = order  # type: ignore[attr-defined]

    def provider(action: str, key: str) -> str:
        calls.effect(action, key)
        return action

    def make_do(n: int) -> Any:
        def do(sctx: StepContext, order_id: str) -> str:
            calls.step(f"do{n}")
            if n == 4:
                if crash:  # the next effect recorded — in the first compensation — kills its worker
                    crash["local"].crash_at("after_record")
                raise Declined("step 4 declined")
            return sctx.tool(f"book{n}", provider, f"book{n}", sctx.idempotency_key(f"book{n}"))

        do.__name__ = f"do{n}"
        return do

    def make_undo(n: int) -> Any:
        def undo(sctx: StepContext, order_id: str) -> str:
            calls.step(f"undo{n}")
            if fail_undo == f"undo{n}":
                raise ConnectionError("cannot reach the provider")
            order.append(f"undo{n}")
            return sctx.tool(f"cancel{n}", provider, f"cancel{n}", sctx.idempotency_key(f"cancel{n}"))

        return undo

    @app.job("trip")
    def trip(ctx: JobContext, order_id: str) -> str:
        for n in range(1, 5):
            ctx.step(
                make_do(n),
                order_id,
                compensate=make_undo(n),
                retry=RetryPolicy(initial_interval=timedelta(0)),
            )
        return "booked"

    @app.job("trip_then_wait")
    def trip_then_wait(ctx: JobContext, order_id: str) -> str:
        for n in range(1, 3):
            ctx.step(make_do(n), order_id, compensate=make_undo(n))
        ctx.wait_for_signal("go")
        return "booked"

    return app


def test_saga_failing_at_step_four_compensates_three_two_one_once_each() -> None:
    calls = Calls()
    with LocalRuntime(saga_app(calls)) as local:
        job_id = local.start("trip", "o-1")
        view = local.wait(job_id)
        events = local.events(job_id)
        report = local.replay(job_id)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type.endswith("Declined"), "the original error is preserved"
    assert calls.order == ["undo3", "undo2", "undo1"]  # type: ignore[attr-defined]
    assert {f"cancel{n}": calls.effects[f"cancel{n}"] for n in (1, 2, 3)} == {
        "cancel1": 1,
        "cancel2": 1,
        "cancel3": 1,
    }
    assert calls.effects["cancel4"] == 0 and calls.steps["undo4"] == 0
    compensated = [e.name for e in events if e.type is EventType.COMPENSATION_COMMITTED]
    assert compensated == ["undo-do3", "undo-do2", "undo-do1"]
    assert events[-1].type is EventType.JOB_FAILED and events[-1].detail["compensated"] == compensated
    assert report.consistent and report.reached_end, "replay walks the saga as the worker ran it"


def test_saga_with_a_crash_mid_compensation_still_undoes_each_step_once() -> None:
    calls = Calls()
    crash: dict[str, LocalRuntime] = {}
    with LocalRuntime(saga_app(calls, crash=crash)) as local:
        crash["local"] = local
        job_id = local.start("trip", "o-2")
        view = local.wait(job_id)

    assert [c.point for c in local.crashes] == ["after_record"]
    assert view.status is JobStatus.FAILED
    assert {n: calls.effects[f"cancel{n}"] for n in (1, 2, 3)} == {1: 1, 2: 1, 3: 1}
    assert calls.steps["undo3"] == 2, "the crashed compensation ran again, its effect did not"


def test_saga_compensation_out_of_retries_leaves_an_explicit_failure() -> None:
    calls = Calls()
    with LocalRuntime(saga_app(calls, fail_undo="undo2")) as local:
        job_id = local.start("trip", "o-3")
        view = local.wait(job_id)
        last = local.events(job_id)[-1]

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.CompensationFailed"
    assert "undo-do1" in view.error.message and "do2" in view.error.message
    assert last.detail["original_error"]["type"].endswith("Declined")
    assert calls.effects["cancel1"] == 0 and calls.steps["undo2"] == 3


def test_cancel_runs_compensations_then_cancels() -> None:
    calls = Calls()
    with LocalRuntime(saga_app(calls)) as local:
        job_id = local.start("trip_then_wait", "o-4")
        local.run_until_idle()
        local.cancel(job_id)
        view = local.wait(job_id)

    assert view.status is JobStatus.CANCELLED
    assert calls.order == ["undo2", "undo1"]  # type: ignore[attr-defined]
