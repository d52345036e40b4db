"""The sweeper ticks jobs whose next tick was lost, and leaves healthy and finished jobs alone."""

from __future__ import annotations

from datetime import timedelta

from aetheris import JobStatus
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls, build_app


def purge_step_queue(local: LocalRuntime) -> None:
    """Lose every tick, as a worker dying between commit and enqueue would."""
    local.sqs.purge_queue(QueueUrl=local.stack.step_queue_url)


def test_sweeper_lost_tick_is_sent_again_and_the_job_completes() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("five_steps", 3)
        purge_step_queue(local)
        local.run_until_idle()
        assert local.get(job_id).status is JobStatus.PENDING, "with the tick lost, nothing moves"
        assert local.sweep()["ticked"] == [], "not stalled yet: the stall window has not passed"

        local.advance(local.settings.stall_after + timedelta(seconds=1))
        swept = local.sweep()
        assert (swept["ticked"], swept["stalled"], swept["due"]) == ([job_id], [job_id], [])
        view = local.wait(job_id)

    assert view.status is JobStatus.COMPLETED
    assert calls.steps == {"s1": 1, "s2": 1, "s3": 1}


def test_sweeper_leaves_finished_jobs_alone() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", 1)
        local.wait(job_id)
        local.advance(timedelta(hours=1))
        assert local.sweep() == {"examined": 0, "ticked": [], "stalled": [], "due": [], "expired": []}


def test_sweeper_leaves_a_job_with_a_live_claim_alone() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", 2)
        local.advance(timedelta(hours=1))
        services = local.runtimes[0].services
        now_ms = int(local.clock.now().timestamp() * 1000)
        services.log.claim(job_id, 1, "someone-else", now_ms, now_ms + 60_000)
        assert local.sweep()["ticked"] == []
