"""The core loop on real DynamoDB/SQS semantics (moto): execution counts across crashes and races."""

from __future__ import annotations

from typing import Any

import pytest

from aetheris import EffectSemantics, EventType, IdempotencyConflict, JobStatus
from aetheris._store.jobs import JobStore
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls, build_app


def commits(events: list, name: str) -> int:
    return sum(1 for e in events if e.type is EventType.STEP_COMMITTED and e.name == name)


def test_five_step_job_each_step_runs_once_and_commits_once() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("five_steps", 5)
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED
    assert view.result == [10, 20, 30, 40, 50]
    assert calls.steps == {f"s{n}": 1 for n in range(1, 6)}
    assert [commits(events, f"s{n}") for n in range(1, 6)] == [1] * 5
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[0].type is EventType.JOB_CREATED and events[-1].type is EventType.JOB_COMPLETED


def test_step_event_records_attempt_worker_fence_and_timings() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", 1)
        local.wait(job_id)
        step = next(e for e in local.events(job_id) if e.type is EventType.STEP_COMMITTED)

    assert step.attempt == 1
    assert step.fence == 1
    assert step.worker_id.startswith("local-worker-")
    assert step.step_id == "0-s1"
    assert step.started_at is not None and step.ended_at is not None and step.duration_ms is not None
    assert step.ended_at >= step.started_at


@pytest.mark.parametrize(
    "point",
    ["before_effect", "after_effect", "after_record", "before_commit", "after_commit", "before_enqueue"],
)
def test_crash_at_least_once_job_completes_with_one_key(point: str) -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls, EffectSemantics.AT_LEAST_ONCE)) as local:
        local.crash_at(point)  # type: ignore[arg-type]
        job_id = local.start("payment", {"order_id": "o-1", "amount": 30})
        view = local.wait(job_id)
        events = local.events(job_id)

    assert [c.point for c in local.crashes] == [point]
    assert view.status is JobStatus.COMPLETED
    assert len(set(calls.keys["charge"])) == 1, "every call must carry the same idempotency key"
    # Only a crash between the call and its record makes the callee see the key a second time.
    assert calls.effects["charge"] == (2 if point == "after_effect" else 1)
    assert commits(events, "charge") == 1 and commits(events, "confirm") == 1
    assert view.result == f"confirmed ch_o-1_{calls.effects['charge']}"


@pytest.mark.parametrize(
    "point", ["before_effect", "after_record", "before_commit", "after_commit", "before_enqueue"]
)
def test_crash_at_most_once_outside_the_window_completes_with_one_call(point: str) -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls, EffectSemantics.AT_MOST_ONCE)) as local:
        local.crash_at(point)  # type: ignore[arg-type]
        job_id = local.start("payment", {"order_id": "o-2", "amount": 5})
        view = local.wait(job_id)

    assert view.status is JobStatus.COMPLETED
    assert calls.effects["charge"] == 1


def test_crash_at_most_once_after_effect_fails_visibly_and_never_calls_again() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls, EffectSemantics.AT_MOST_ONCE)) as local:
        local.crash_at("after_effect")
        job_id = local.start("payment", {"order_id": "o-3", "amount": 7})
        view = local.wait(job_id)
        failed = [e for e in local.events(job_id) if e.type is EventType.STEP_FAILED]

    assert view.status is JobStatus.FAILED
    assert view.error is not None and view.error.type == "aetheris.errors.EffectOutcomeUnknown"
    assert "never recorded" in view.error.message
    assert calls.effects["charge"] == 1
    assert calls.steps["confirm"] == 0
    assert len(failed) == 1 and failed[0].next_attempt_at is None


def test_failed_tool_call_is_recorded_failed_and_the_step_retry_calls_it_again() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("flaky", None)
        view = local.wait(job_id)
        events = local.events(job_id)
        effects = local.runtimes[0].effects(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == "ok"
    assert calls.effects["flaky"] == 2 and calls.steps["call_flaky"] == 2
    assert len(set(calls.keys["flaky"])) == 1
    failed = [e for e in events if e.type is EventType.STEP_FAILED]
    assert len(failed) == 1 and failed[0].error is not None
    assert failed[0].error.type == "builtins.ConnectionError" and failed[0].attempt == 1
    assert commits(events, "call_flaky") == 1
    assert next(e for e in events if e.type is EventType.STEP_COMMITTED).attempt == 2
    (entry,) = effects
    assert entry["state"] == "RECORDED" and entry["claims"] == 2
    assert "error" not in entry, "a recorded success carries no stale error from the failed attempt"


def test_idempotent_start_returns_the_same_job() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        first = local.start("five_steps", 2, idempotency_key="k-1")
        second = local.start("five_steps", 2, idempotency_key="k-1")
        other = local.start("five_steps", 2, idempotency_key="k-2")
        local.wait(first)
        created = [e for e in local.events(first) if e.type is EventType.JOB_CREATED]

    assert first == second != other
    assert len(created) == 1


def test_idempotency_key_reused_with_other_input_or_type_is_a_conflict() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        first = local.start("payment", {"order_id": "o-7", "amount": 1}, idempotency_key="same")
        reordered = local.runtimes[0].start(
            "payment", {"amount": 1, "order_id": "o-7"}, idempotency_key="same"
        )
        with pytest.raises(IdempotencyConflict):
            local.start("payment", {"order_id": "o-7", "amount": 2}, idempotency_key="same")
        with pytest.raises(IdempotencyConflict):
            local.start("five_steps", 1, idempotency_key="same")

    assert reordered.job_id == first and not reordered.created


def test_job_store_reads_only_events_newer_than_it_knows() -> None:
    returned: list[int] = []

    def count_items(parsed: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "Query":
            returned.append(len(parsed.get("Items", [])))

    with LocalRuntime(build_app(Calls()), workers=1) as local:
        job_id = local.start("five_steps", 5)
        local.wait(job_id)
        jobs = local.runtimes[0].services.jobs
        local.dynamodb.meta.events.register("after-call.dynamodb.Query", count_items)
        first = jobs.load(job_id)
        fresh = JobStore(jobs.table).load(job_id)

    assert first is not None and fresh is not None
    assert [e["seq"] for e in first.events] == [e["seq"] for e in fresh.events] == list(range(7))
    assert returned == [1, 8], "the warm store read only the job item; a cold one read the whole log"
