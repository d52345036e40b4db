"""Time travel: ``fork`` (a new job from an old one's log up to a seq) and ``retry`` (a FAILED job
again from its failed operation). Effects recorded before the cut are never made again; the fork's
live steps get keys of their own and the same crash guarantees as any job."""

from __future__ import annotations

import json

import pytest

from aetheris import App, EventType, JobContext, JobStatus, NonRetryableError, RetryPolicy, StepContext
from aetheris._fork import InvalidForkPoint, NotRetryable
from aetheris.budget import Budget
from aetheris.errors import JobNotFound
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls

CRASH_POINTS = ("before_effect", "after_effect", "after_record", "before_commit", "after_commit")


class Flaky:
    """Whether ``ship`` is broken: the 'deployed code' a fork is meant to try again once fixed."""

    broken = True


def build(calls: Calls, flaky: Flaky) -> App:
    app = App("fork-tests")

    def charge(sctx: StepContext, amount: int) -> str:
        calls.step("charge")
        key = sctx.idempotency_key("psp.charge")
        return sctx.tool("psp.charge", lambda: f"ch_{calls.effect('charge', key)}")

    def ship(sctx: StepContext, charge_id: str) -> str:
        calls.step("ship")
        key = sctx.idempotency_key("carrier.book")
        booked = sctx.tool("carrier.book", lambda: f"bk_{calls.effect('book', key)}")
        if flaky.broken:
            raise RuntimeError("label printer on fire")
        return f"{charge_id}/{booked}"

    @app.job("order")
    def order(ctx: JobContext, amount: int) -> str:
        charge_id = ctx.step(charge, amount)
        approval = ctx.wait_for_signal("approve")
        shipped = ctx.step(ship, charge_id, retry=RetryPolicy(max_attempts=2))
        return f"{shipped}:{approval}"

    return app


def _failed_order(local: LocalRuntime) -> str:
    job = local.start("order", 5)
    local.run_until_idle()
    local.signal(job, "approve", "yes")
    assert local.wait(job).status is JobStatus.FAILED
    return job


def test_retry_of_a_failed_job_runs_the_failed_step_again_and_no_recorded_effect_twice() -> None:
    calls, flaky = Calls(), Flaky()
    with LocalRuntime(build(calls, flaky)) as local:
        old = _failed_order(local)
        assert (calls.effects["charge"], calls.effects["book"], calls.steps["ship"]) == (1, 1, 2)
        flaky.broken = False  # the fix is deployed
        new = local.retry(old)
        done = local.wait(new)
        events = local.events(new)
        trace = local.trace(new)

    assert done.status is JobStatus.COMPLETED and done.result == "ch_1/bk_1:yes"
    assert calls.effects["charge"] == 1  # recorded before the failure: copied, not charged again
    assert calls.effects["book"] == 1  # recorded by the failing step: answered from the copied ledger
    assert calls.steps["ship"] == 3  # the failed step ran once more (a fresh retry policy)
    created = events[0]
    assert created.type is EventType.JOB_CREATED and created.job_id == new
    assert created.detail["forked_from"]["job_id"] == old and created.detail["forked_from"]["via"] == "retry"
    assert created.input is not None and json.loads(created.input) == 5
    assert all(e.job_id == new for e in events)
    assert trace.forked_from is not None and trace.forked_from.job_id == old


def test_fork_at_a_seq_copies_the_log_up_to_it_and_runs_the_rest_live_with_new_keys() -> None:
    calls, flaky = Calls(), Flaky()
    flaky.broken = False
    with LocalRuntime(build(calls, flaky)) as local:
        old = local.start("order", 5)
        local.run_until_idle()
        local.signal(old, "approve", "yes")
        assert local.wait(old).status is JobStatus.COMPLETED
        consumed = next(e for e in local.events(old) if e.type is EventType.SIGNAL_CONSUMED)
        new = local.fork(old, consumed.seq)
        done = local.wait(new)

    assert done.status is JobStatus.COMPLETED and done.result == "ch_1/bk_2:yes"
    assert calls.effects["charge"] == 1  # before the cut: not made again
    assert calls.effects["book"] == 2  # after the cut: made live, once, under the fork's own key
    assert calls.keys["book"][1].startswith(f"{new}:") and calls.keys["book"][0].startswith(f"{old}:")


def test_fork_at_a_wait_parks_the_fork_on_its_own_inbox() -> None:
    calls, flaky = Calls(), Flaky()
    flaky.broken = False
    with LocalRuntime(build(calls, flaky)) as local:
        old = local.start("order", 5)
        local.run_until_idle()
        started = next(e for e in local.events(old) if e.type is EventType.WAIT_STARTED)
        new = local.fork(old, started.seq)
        local.run_until_idle()
        parked = local.get(new)
        local.signal(old, "approve", "old")  # the old job's inbox is not the fork's
        local.run_until_idle()
        still = local.get(new)
        local.signal(new, "approve", "new")
        done = local.wait(new)

    assert parked.status is JobStatus.WAITING and parked.waiting_for == "approve"
    assert still.status is JobStatus.WAITING
    assert done.status is JobStatus.COMPLETED and done.result.endswith(":new")
    assert calls.effects["charge"] == 1


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_crash_in_the_forks_first_live_step_behaves_as_for_any_job(point: str) -> None:
    calls, flaky = Calls(), Flaky()
    flaky.broken = False
    with LocalRuntime(build(calls, flaky)) as local:
        old = local.start("order", 5)
        local.run_until_idle()
        local.signal(old, "approve", "yes")
        assert local.wait(old).status is JobStatus.COMPLETED
        consumed = next(e for e in local.events(old) if e.type is EventType.SIGNAL_CONSUMED)
        local.crash_at(point)  # type: ignore[arg-type]
        new = local.fork(old, consumed.seq)  # ship, and its booking, run live in the fork
        done = local.wait(new)
        crashes = len(local.crashes)

    assert crashes == 1
    assert done.status is JobStatus.COMPLETED
    assert calls.effects["charge"] == 1  # before the cut: never again, whatever the crash
    fork_keys = [key for key in calls.keys["book"] if key.startswith(f"{new}:")]
    # Once; twice only in the window AT_LEAST_ONCE exists for (called, not recorded), with the same key.
    assert len(fork_keys) == (2 if point == "after_effect" else 1)
    assert len(set(fork_keys)) == 1


def test_fork_of_an_unknown_job_or_bad_seq_is_refused() -> None:
    calls, flaky = Calls(), Flaky()
    with LocalRuntime(build(calls, flaky)) as local:
        old = _failed_order(local)
        last = local.events(old)[-1].seq
        with pytest.raises(JobNotFound):
            local.fork("no-such-job", 1)
        with pytest.raises(InvalidForkPoint, match="past the end"):
            local.fork(old, last + 1)
        with pytest.raises(InvalidForkPoint, match="the job's end"):
            local.fork(old, last)
        with pytest.raises(InvalidForkPoint):
            local.fork(old, -1)
        running = local.start("order", 1)
        with pytest.raises(NotRetryable, match="only a FAILED or CANCELLED"):
            local.retry(running)


def build_saga(calls: Calls) -> App:
    app = App("fork-saga")

    def reserve(sctx: StepContext, what: str) -> str:
        return sctx.tool(f"{what}.reserve", lambda: calls.effect(f"reserve-{what}", what) and what)

    def release(sctx: StepContext, what: str) -> None:
        sctx.tool(f"{what}.release", lambda: calls.effect(f"release-{what}", what))

    def explode(sctx: StepContext) -> None:
        raise NonRetryableError("no")

    @app.job("trip")
    def trip(ctx: JobContext, _: None) -> None:
        ctx.step(reserve, "hotel", name="hotel", compensate=release)
        ctx.step(reserve, "car", name="car", compensate=release)
        ctx.step(explode)

    return app


def test_fork_inside_a_compensation_run_goes_on_with_it_and_retry_refuses_a_compensated_job() -> None:
    calls = Calls()
    with LocalRuntime(build_saga(calls)) as local:
        old = local.start("trip", None, budget=Budget(max_steps=10))
        assert local.wait(old).status is JobStatus.FAILED
        undone_car = next(e for e in local.events(old) if e.type is EventType.COMPENSATION_COMMITTED)
        new = local.fork(old, undone_car.seq)  # the car was released, the hotel not yet
        done = local.wait(new)
        with pytest.raises(NotRetryable, match="compensations already undid"):
            local.retry(old)

    assert done.status is JobStatus.FAILED and done.budget == Budget(max_steps=10)  # the old job's budget
    assert calls.effects["reserve-hotel"] == calls.effects["reserve-car"] == 1  # copied, never again
    assert calls.effects["release-car"] == 1  # its compensation was copied: not run again
    assert calls.effects["release-hotel"] == 2  # after the cut: the old job's run, and the fork's
