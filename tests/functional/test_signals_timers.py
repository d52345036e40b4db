"""Signals through the SQS-fed inbox, waits with timeouts, durable timers and cancellation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, JobFinished, JobNotFound, JobStatus, StepContext, WaitTimeout
from aetheris._store.inbox import SignalIdConflict
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls

LEASE = timedelta(seconds=60)


def signal_app(calls: Calls, on_step: Callable[[], None] | None = None) -> App:
    app = App("signals")

    def prepare(sctx: StepContext, n: int) -> int:
        calls.step("prepare")
        if on_step is not None:
            on_step()
        return n

    def finish(sctx: StepContext, approval: Any) -> str:
        calls.step("finish")
        return f"done with {approval}"

    @app.job("approve")
    def approve(ctx: JobContext, _: None) -> str:
        ctx.step(prepare, 1)
        approval = ctx.wait_for_signal("approval")
        return ctx.step(finish, approval)

    @app.job("two_waits")
    def two_waits(ctx: JobContext, timeout_s: int) -> list[Any]:
        got = []
        for _ in range(2):
            try:
                got.append(ctx.wait_for_signal("item", timeout=timedelta(seconds=timeout_s)))
            except WaitTimeout:
                got.append("timed out")
        return got

    @app.job("nap")
    def nap(ctx: JobContext, seconds: int) -> str:
        ctx.step(prepare, 1)
        ctx.sleep(timedelta(seconds=seconds))
        return ctx.step(finish, "nap")

    return app


def types(local: LocalRuntime, job_id: str) -> list[EventType]:
    return [e.type for e in local.events(job_id)]


def test_signal_sent_before_the_wait_is_consumed_by_it() -> None:
    calls = Calls()
    with LocalRuntime(signal_app(calls)) as local:
        job_id = local.start("approve", None)
        local.signal(job_id, "approval", {"approved": True})
        assert local.sources[-1].poll_once().deleted == 1, "the signal is in the inbox before the job runs"
        view = local.wait(job_id)
        recorded = types(local, job_id)

    assert view.status is JobStatus.COMPLETED and view.result == "done with {'approved': True}"
    assert EventType.WAIT_STARTED not in recorded
    assert calls.steps == {"prepare": 1, "finish": 1}


def test_signal_wakes_a_parked_job_exactly_once() -> None:
    calls = Calls()
    with LocalRuntime(signal_app(calls)) as local:
        job_id = local.start("approve", None)
        local.run_until_idle()
        parked = local.get(job_id)
        local.signal(job_id, "approval", "yes")
        view = local.wait(job_id)
        events = local.events(job_id)

    assert parked.status is JobStatus.WAITING and parked.waiting_for == "approval"
    assert view.status is JobStatus.COMPLETED and view.result == "done with yes"
    assert [e.type for e in events].count(EventType.SIGNAL_CONSUMED) == 1
    assert calls.steps == {"prepare": 1, "finish": 1}


def test_duplicate_signal_id_is_one_signal() -> None:
    with LocalRuntime(signal_app(Calls())) as local:
        job_id = local.start("two_waits", 30)
        local.signal(job_id, "item", "first", signal_id="sig-1")
        local.signal(job_id, "item", "first", signal_id="sig-1")  # a retry: accepted, one signal
        with pytest.raises(SignalIdConflict):  # the id names one signal: never a silent drop
            local.signal(job_id, "item", "first again", signal_id="sig-1")
        local.run_until_idle()
        local.advance(timedelta(seconds=31))
        view = local.wait(job_id)

    assert view.result == ["first", "timed out"]


def test_several_signals_of_one_name_are_consumed_in_arrival_order() -> None:
    with LocalRuntime(signal_app(Calls())) as local:
        job_id = local.start("two_waits", 30)
        local.signal(job_id, "item", "a")
        local.run_until_idle()
        local.clock.advance(timedelta(milliseconds=5))
        local.signal(job_id, "item", "b")
        view = local.wait(job_id)

    assert view.result == ["a", "b"]


def test_duplicate_signal_ingested_concurrently_is_stored_once() -> None:
    with LocalRuntime(signal_app(Calls()), server=True) as local, ThreadPoolExecutor(2) as pool:
        job_id = local.start("two_waits", 30)
        local.run_until_idle()
        body = f'{{"job_id": "{job_id}", "name": "item", "signal_id": "dup", "payload": 1, "sent_at_ms": 0}}'
        start = threading.Barrier(2)

        def ingest(worker: int) -> str:
            start.wait(10)
            return local.runtimes[worker].ingest_signal(body)

        outcomes = sorted(pool.map(ingest, [0, 1]))
        local.run_until_idle()
        local.advance(timedelta(seconds=31))
        view = local.wait(job_id)

    assert outcomes.count("duplicate") == 1 or outcomes == ["woke", "woke"]
    assert view.result == [1, "timed out"]


def test_crash_in_ingest_after_inbox_write_still_wakes_the_job_once() -> None:
    calls = Calls()
    with LocalRuntime(signal_app(calls)) as local:
        job_id = local.start("approve", None)
        local.run_until_idle()
        local.crash_at("after_inbox_write")
        local.signal(job_id, "approval", "ok")
        view = local.wait(job_id)

    assert [c.point for c in local.crashes] == ["after_inbox_write"]
    assert view.status is JobStatus.COMPLETED and view.result == "done with ok"
    assert calls.steps == {"prepare": 1, "finish": 1}


def test_waiting_job_is_never_rerun_or_reclaimed_while_it_waits() -> None:
    calls = Calls()
    with LocalRuntime(signal_app(calls)) as local:
        job_id = local.start("approve", None)
        local.run_until_idle()
        before = local.events(job_id)
        for _ in range(10):
            local.advance(LEASE)
            local.run_until_idle()
        after = local.events(job_id)
        slot = local.runtimes[0].services.jobs.load(job_id)
        status = local.get(job_id).status

    assert after == before
    assert slot is not None and slot.claim is None, "nobody claimed the waiting job's next slot"
    assert calls.steps == {"prepare": 1}
    assert status is JobStatus.WAITING


def test_wait_timeout_raises_wait_timeout_the_job_can_catch() -> None:
    with LocalRuntime(signal_app(Calls())) as local:
        job_id = local.start("two_waits", 3600)
        local.run_until_idle()
        local.advance(timedelta(hours=1, seconds=1))
        local.run_until_idle()
        local.advance(timedelta(hours=1, seconds=1))
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.result == ["timed out", "timed out"]
    timed_out = [e for e in events if e.type is EventType.WAIT_TIMED_OUT]
    assert len(timed_out) == 2 and timed_out[0].error is not None
    assert timed_out[0].error.type == "aetheris.errors.WaitTimeout"


def test_two_day_sleep_holds_no_message_and_fires_on_advance() -> None:
    calls = Calls()
    with LocalRuntime(signal_app(calls)) as local:
        job_id = local.start("nap", 2 * 24 * 3600)
        local.run_until_idle()
        sleeping = local.get(job_id)
        held = local.queue.next_due_in()
        local.advance(timedelta(days=1))
        local.run_until_idle()
        still = local.get(job_id)
        local.advance(timedelta(days=1, seconds=1))
        swept = local.sweep()
        view = local.wait(job_id)
        fired = types(local, job_id)

    assert sleeping.status is JobStatus.SLEEPING and held is None
    assert still.status is JobStatus.SLEEPING
    assert (swept["due"], swept["stalled"]) == ([job_id], []), "a due timer is routine, not a stall"
    assert view.status is JobStatus.COMPLETED and view.result == "done with nap"
    assert calls.steps == {"prepare": 1, "finish": 1}
    assert fired.count(EventType.TIMER_STARTED) == 1 and fired.count(EventType.TIMER_FIRED) == 1


def test_short_sleep_fires_from_its_delayed_tick() -> None:
    with LocalRuntime(signal_app(Calls())) as local:
        job_id = local.start("nap", 300)
        local.run_until_idle()
        assert local.queue.next_due_in() == timedelta(seconds=300)
        view = local.wait(job_id)

    assert view.status is JobStatus.COMPLETED


@pytest.mark.parametrize("job_type, arg", [("approve", None), ("nap", 3 * 24 * 3600)])
def test_cancel_parked_job_is_cancelled_at_once(job_type: str, arg: Any) -> None:
    calls = Calls()
    with LocalRuntime(signal_app(calls)) as local:
        job_id = local.start(job_type, arg)
        local.run_until_idle()
        local.cancel(job_id)
        local.run_until_idle()
        view = local.get(job_id)
        recorded = types(local, job_id)

    assert view.status is JobStatus.CANCELLED
    assert recorded[-1] is EventType.JOB_CANCELLED
    assert calls.steps == {"prepare": 1}


def test_cancel_running_step_finishes_it_and_stops_before_the_next_operation() -> None:
    calls = Calls()
    holder: dict[str, Any] = {}

    def cancel_while_running() -> None:
        holder["view"] = holder["local"].cancel(holder["job_id"])
        holder["again"] = holder["local"].cancel(holder["job_id"])  # idempotent

    with LocalRuntime(signal_app(calls, on_step=cancel_while_running)) as local:
        holder["local"] = local
        holder["job_id"] = job_id = local.start("approve", None)
        view = local.wait(job_id)
        with pytest.raises(JobFinished):
            local.cancel(job_id)
        with pytest.raises(JobFinished):
            local.signal(job_id, "approval", "too late")
        with pytest.raises(JobNotFound):
            local.cancel("no-such-job")
        recorded = types(local, job_id)

    assert view.status is JobStatus.CANCELLED
    assert holder["view"].cancel_requested_at is not None and holder["again"].status is JobStatus.PENDING
    assert calls.steps == {"prepare": 1}
    assert recorded == [
        EventType.JOB_CREATED,
        EventType.STEP_COMMITTED,
        EventType.CANCEL_REQUESTED,  # the cancel took effect at the next operation, not run
        EventType.JOB_CANCELLED,
    ]


def test_replay_of_a_signalled_job_returns_the_recorded_payload() -> None:
    calls = Calls()
    with LocalRuntime(signal_app(calls)) as local:
        job_id = local.start("approve", None)
        local.run_until_idle()
        local.signal(job_id, "approval", {"by": "ana"})
        local.wait(job_id)
        report = local.replay(job_id)
        trace = local.trace(job_id)

    assert report.consistent and report.output_matches
    assert [op.kind for op in trace.operations] == ["step", "wait", "step", "end"]
    wait_op = trace.operations[1]
    assert wait_op.signal is not None and wait_op.signal.payload == {"by": "ana"}
    assert calls.steps == {"prepare": 1, "finish": 1}
