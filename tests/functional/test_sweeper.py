"""The sweeper finds every job that should be moving and is not — within one sweep, whatever the
number of healthy jobs — ticks it, and leaves healthy, parked and finished jobs alone at no cost.

Ticks are lost on purpose by purging the step queue (a worker dying between commit and enqueue
with its message gone too, a first tick never sent, a tick dead-lettered): SQS redelivery cannot
help then, only the sweeper. Requests are counted with botocore event hooks, as
``bench/requests_per_step.py`` counts them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from aetheris import App, JobContext, JobStatus, NonRetryableError, StepContext
from aetheris._clock import to_millis
from aetheris._store import schema
from aetheris.events import EventType
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls, build_app


def purge_step_queue(local: LocalRuntime) -> None:
    """Lose every tick, as a worker dying between commit and enqueue with its message lost would.

    (Received and deleted rather than purged: SQS allows one PurgeQueue a minute.)"""
    url = local.stack.step_queue_url
    for source in local.sources:  # a dead worker's messages, invisible until their timeout
        for receipt in source.in_flight.values():
            local.sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt)
        source.in_flight.clear()
    while messages := local.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            local.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def deliver_one(local: LocalRuntime) -> Any:
    """One poll of the first step worker: at most one batch (one tick for a single job)."""
    return local.sources[0].poll_once()


@contextmanager
def counting(local: LocalRuntime) -> Iterator[Counter[str]]:
    """DynamoDB and SQS requests made while the block runs, by operation (and by job item write)."""
    calls: Counter[str] = Counter()

    def count(model: Any, params: dict[str, Any], **_: Any) -> None:
        calls[model.name] += 1
        if model.name == "UpdateItem" and params.get("Key", {}).get("sk", {}).get("S") == schema.JOB_SK:
            calls["job item updates"] += 1

    clients = (local.dynamodb, local.sqs)
    for client in clients:
        client.meta.events.register("provide-client-params.*.*", count)
    try:
        yield calls
    finally:
        for client in clients:
            client.meta.events.unregister("provide-client-params.*.*", count)


def sweep_app(calls: Calls) -> App:
    app = build_app(calls)

    def book(sctx: StepContext, n: int) -> int:
        calls.step(f"book{n}")
        return n

    def unbook(sctx: StepContext, n: int) -> None:
        calls.step(f"unbook{n}")

    def decline(sctx: StepContext) -> None:
        raise NonRetryableError("declined")

    @app.job("saga")
    def saga(ctx: JobContext, _: None) -> None:
        for n in (1, 2):
            ctx.step(book, n, name=f"book{n}", compensate=unbook)
        ctx.step(decline)

    @app.job("approval")
    def approval(ctx: JobContext, _: None) -> Any:
        return ctx.wait_for_signal("approval")

    @app.job("nap")
    def nap(ctx: JobContext, seconds: int) -> str:
        ctx.sleep(timedelta(seconds=seconds))
        return "rested"

    return app


def test_sweeper_lost_tick_is_sent_again_and_the_job_completes() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("five_steps", 3)
        purge_step_queue(local)
        local.run_until_idle()
        assert local.get(job_id).status is JobStatus.PENDING, "with the tick lost, nothing moves"
        assert local.sweep()["ticked"] == [], "not stalled yet: the stall window has not passed"

        local.clock.advance(local.settings.stall_after + timedelta(seconds=1))
        swept = local.sweep()
        again = local.sweep()
        view = local.wait(job_id)

    assert (swept["ticked"], swept["stalled"], swept["due"]) == ([job_id], [job_id], [])
    assert again["ticked"] == [], "the rescue tick is given time to arrive: no second one at once"
    assert view.status is JobStatus.COMPLETED
    assert calls.steps == {"s1": 1, "s2": 1, "s3": 1}


def test_sweeper_stalled_job_behind_more_healthy_jobs_than_a_page_is_found_in_one_sweep() -> None:
    healthy_count = 210  # the old sweeper read the 200 oldest PENDING/RUNNING jobs, no further
    with LocalRuntime(build_app(Calls())) as local:
        services = local.runtimes[0].services
        healthy = [local.start("five_steps", 1) for _ in range(healthy_count)]
        purge_step_queue(local)
        now_ms = to_millis(local.clock.now())
        for job_id in healthy:  # each held by a live worker running a long first step
            services.log.claim(job_id, 1, "busy-worker", now_ms, now_ms + 3_600_000)
        local.clock.advance(timedelta(seconds=1))
        stalled = local.start("five_steps", 1)
        purge_step_queue(local)
        local.clock.advance(local.settings.stall_after + timedelta(seconds=2))
        swept = local.sweep()
        view = local.wait(stalled)

    assert swept["ticked"] == [stalled] and swept["stalled"] == [stalled]
    assert swept["complete"] and swept["moved"] == healthy_count, "the held jobs' entries move forward"
    assert view.status is JobStatus.COMPLETED


def test_sweeper_compensating_job_whose_tick_was_lost_is_rescued() -> None:
    calls = Calls()
    with LocalRuntime(sweep_app(calls)) as local:
        job_id = local.start("saga", None)
        while local.get(job_id).status is not JobStatus.COMPENSATING:
            assert deliver_one(local).received == 1
        purge_step_queue(local)
        local.run_until_idle()
        stranded = local.get(job_id).status
        local.clock.advance(local.settings.stall_after + timedelta(seconds=1))
        swept = local.sweep()
        view = local.wait(job_id)

    assert stranded is JobStatus.COMPENSATING
    assert swept["stalled"] == [job_id]
    assert view.status is JobStatus.FAILED and view.error is not None and "declined" in view.error.message
    assert calls.steps == {"book1": 1, "book2": 1, "unbook2": 1, "unbook1": 1}


def test_sweeper_job_parked_on_a_signal_without_deadline_is_not_read_before_its_extension() -> None:
    with LocalRuntime(sweep_app(Calls())) as local:
        job_id = local.start("approval", None)
        local.run_until_idle()
        events_before = len(local.events(job_id))
        sweeps = []
        with counting(local) as calls:
            for _ in range(4):  # 12 days: its retention extension is due half a horizon (15 days) in
                local.clock.advance(timedelta(days=3))
                sweeps.append(local.sweep())
        status = local.get(job_id).status
        events_after = len(local.events(job_id))

    assert status is JobStatus.WAITING and events_after == events_before
    assert [(s["examined"], s["ticked"]) for s in sweeps] == [(0, [])] * 4
    assert calls["SendMessage"] == 0 and calls["GetItem"] == 0
    # One Query per shard and the oldest-pending gauge's one: nothing per job.
    assert calls["Query"] == 4 * (local.settings.sweep_shards + 1), "one Query per shard, nothing per job"


def test_sweeper_due_timer_is_ticked_at_its_time_not_before() -> None:
    hour = 3600  # longer than SQS can delay a message: only the sweeper fires it
    with LocalRuntime(sweep_app(Calls())) as local:
        job_id = local.start("nap", hour)
        local.run_until_idle()
        (started,) = [e for e in local.events(job_id) if e.type is EventType.TIMER_STARTED]
        fire_at = started.at + timedelta(seconds=hour)
        local.clock.advance(fire_at - local.clock.now() - timedelta(seconds=1))
        early = local.sweep()
        local.run_until_idle()
        still = local.get(job_id).status
        local.clock.advance(timedelta(seconds=1))
        on_time = local.sweep()
        view = local.wait(job_id)
        (fired,) = [e for e in local.events(job_id) if e.type is EventType.TIMER_FIRED]

    assert early["ticked"] == [] and still is JobStatus.SLEEPING
    assert on_time["ticked"] == [job_id] and on_time["due"] == [job_id] and on_time["stalled"] == []
    assert fired.at >= fire_at and view.status is JobStatus.COMPLETED


def test_sweeper_healthy_long_running_job_costs_nothing_per_step() -> None:
    steps, pause = 40, timedelta(seconds=10)  # 400 s of steady progress: > 3 stall windows
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", steps)
        per_sweep = []
        with counting(local) as worker:
            while not local.get(job_id).status.is_terminal:
                assert deliver_one(local).received == 1
                local.clock.advance(pause)
                with counting(local) as sweeper:
                    swept = local.sweep()
                assert swept["examined"] == 0, "a healthy job is never due"
                per_sweep.append(sweeper["Query"] + sweeper["GetItem"] + sweeper["UpdateItem"])
        shards = local.settings.sweep_shards

    # One Query per shard plus the oldest-pending gauge's: none per job.
    assert per_sweep == [shards + 1] * len(per_sweep), "each sweep: one Query per shard, none per job"
    # The worker refreshes the job's deadline when it gets stale: once per stall_after / 2 at most.
    stall = local.settings.stall_after
    refreshes = worker["job item updates"]  # status changes go in the commit's transaction instead
    assert 1 <= refreshes <= (steps * pause) / (stall / 2) + 1
    assert refreshes < steps / 5


def test_sweeper_worker_killed_mid_step_with_its_message_lost_is_rescued() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("payment", {"order_id": "o-1", "amount": 5})
        local.crash_at("after_effect")  # the charge was made, its record never written
        crashed = deliver_one(local).crashed
        purge_step_queue(local)  # the dead worker's message is gone as well
        local.run_until_idle()
        held = local.get(job_id).status
        local.clock.advance(local.settings.lease + local.settings.stall_after + timedelta(seconds=1))
        swept = local.sweep()
        view = local.wait(job_id)
        events = local.events(job_id)

    assert crashed is not None and held is JobStatus.PENDING
    assert swept["stalled"] == [job_id] and swept["ticked"] == [job_id]
    assert view.status is JobStatus.COMPLETED
    assert calls.effects["charge"] == 2, "AT_LEAST_ONCE: the dead worker's call is made again"
    assert len(set(calls.keys["charge"])) == 1, "with the same idempotency key"
    assert any(e.reclaimed_from for e in events), "the rescue took over the dead worker's claim"


def test_sweeper_leaves_finished_jobs_alone() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", 1)
        local.wait(job_id)
        local.advance(timedelta(hours=1))
        swept = local.sweep()

    assert (swept["examined"], swept["ticked"], swept["stalled"], swept["due"]) == (0, [], [], [])


def test_sweeper_leaves_a_job_with_a_live_claim_alone() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", 2)
        purge_step_queue(local)
        services = local.runtimes[0].services
        now_ms = to_millis(local.clock.now())
        services.log.claim(job_id, 1, "someone-else", now_ms, now_ms + 3_600_000)
        local.clock.advance(timedelta(minutes=3))  # due (stall_after), within the step's time limit
        swept = local.sweep()
        again = local.sweep()

    assert swept["ticked"] == [] and swept["stuck"] == [] and swept["moved"] == 1
    assert again["examined"] == 0, "its entry moved past the live lease"


def test_sweeper_cancel_of_a_parked_job_whose_tick_was_lost_is_carried_out() -> None:
    with LocalRuntime(sweep_app(Calls())) as local:
        job_id = local.start("approval", None)
        local.run_until_idle()
        local.cancel(job_id)
        purge_step_queue(local)  # the cancel's tick is lost: the job would wait for ever
        local.run_until_idle()
        still = local.get(job_id).status
        local.clock.advance(local.settings.stall_after + timedelta(seconds=1))
        swept = local.sweep()
        view = local.wait(job_id)

    assert still is JobStatus.WAITING
    assert swept["stalled"] == [job_id] and swept["ticked"] == [job_id]
    assert view.status is JobStatus.CANCELLED
