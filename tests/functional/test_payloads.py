"""Big payloads: over the offload threshold a recorded value goes to S3 and the item keeps a reference.

Every test runs on moto with the payload bucket the template names (``LocalRuntime`` creates it)
and counts real executions: a big value is produced once, read back from S3 on replay, and what
readers (``get``, ``events``, the HTTP API, exports) see is the value, never the reference.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aetheris import (
    App,
    EffectSemantics,
    EventType,
    JobContext,
    JobStatus,
    PayloadCorrupted,
    StepContext,
    hosting,
)
from aetheris._store.payloads import PayloadRef, is_reference
from aetheris.testing import LocalRuntime, replay
from aetheris_infra.http_bridge import serve
from api.app import handler
from tests.functional.jobs import Calls
from tests.functional.test_api import Api

MIB = 1024 * 1024


def payload_app(calls: Calls) -> App:
    app = App("payloads")

    def produce(sctx: StepContext, size: int) -> str:
        calls.step("produce")
        return "p" * size

    def measure(sctx: StepContext, text: str) -> int:
        calls.step("measure")
        return len(text)

    @app.job("big_step")
    def big_step(ctx: JobContext, size: int) -> int:
        return ctx.step(measure, ctx.step(produce, size))  # measure's tick replays produce's value

    @app.job("produce_wait_measure")
    def produce_wait_measure(ctx: JobContext, size: int) -> int:
        text = ctx.step(produce, size)
        ctx.wait_for_signal("go")
        return ctx.step(measure, text)

    @app.job("echo")
    def echo(ctx: JobContext, text: str) -> str:
        return text

    def fetch(sctx: StepContext) -> int:
        calls.step("fetch")
        text = sctx.tool("download", lambda: calls.effect("download", "k") and "t" * MIB)
        return len(str(text))

    @app.job("big_tool")
    def big_tool(ctx: JobContext, _: None) -> int:
        return ctx.step(fetch)

    @app.job("big_signal")
    def big_signal(ctx: JobContext, _: None) -> int:
        return len(str(ctx.wait_for_signal("document")))

    return app


def raw_events(local: LocalRuntime, job_id: str) -> list[dict[str, Any]]:
    snapshot = local.runtimes[0].services.jobs.load(job_id)
    assert snapshot is not None
    return snapshot.events


def stored_object(local: LocalRuntime, stored: str) -> bytes:
    ref = PayloadRef.parse(stored)
    assert ref is not None, stored[:80]
    return local.s3.get_object(Bucket=ref.bucket, Key=ref.key)["Body"].read()


def test_big_step_result_is_offloaded_and_replayed_without_running_the_step_again() -> None:
    calls = Calls()
    app = payload_app(calls)
    with LocalRuntime(app) as local:
        job_id = local.start("big_step", MIB)
        view = local.wait(job_id)
        (committed,) = [e for e in raw_events(local, job_id) if e.get("name") == "produce"]
        obj = stored_object(local, committed["result"])
        history = local.export(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED and view.result == MIB
    assert len(json.dumps(committed)) < 1024  # the event item holds the reference only
    assert obj == json.dumps("p" * MIB).encode()
    ref = PayloadRef.parse(committed["result"])
    assert ref is not None and ref.key == f"{job_id}/{ref.sha256}.json"  # content-addressed
    assert calls.steps == {"produce": 1, "measure": 1}
    produced = next(e for e in events if e.name == "produce")
    assert produced.result_json() == "p" * MIB  # readers see the value
    report = replay(app, history)  # the export holds real values: replay needs no S3 and no step
    assert report.consistent and report.reached_end
    assert calls.steps == {"produce": 1, "measure": 1}


def test_big_input_and_result_round_trip_through_the_http_api() -> None:
    text = "i" * MIB
    with LocalRuntime(payload_app(Calls())) as local, serve(handler) as bridge:
        hosting.use(local.runtimes[0])
        try:
            job_id = local.start("echo", text)
            local.wait(job_id)
            api = Api(local, bridge.url)
            status, _, job = api.call("GET", f"/jobs/{job_id}")
            _, _, log = api.call("GET", f"/jobs/{job_id}/events")
        finally:
            hosting.use(None)
        jobs = local.runtimes[0].services.jobs
        item = jobs.get(job_id)
        stored_input = jobs.input_of(item) if item else None

    assert item is not None and is_reference(stored_input) and is_reference(item["result"])
    assert "input" not in item, "the input lives in its own item, not on the job item"
    assert status == 200
    assert job["input"] == text and job["result"] == text
    (completed,) = [e for e in log["events"] if e["type"] == EventType.JOB_COMPLETED]
    assert json.loads(completed["result"]) == text


def test_big_tool_result_is_recorded_once_and_reused_when_the_step_runs_again() -> None:
    calls = Calls()
    with LocalRuntime(payload_app(calls)) as local:
        local.crash_at("after_record")  # the tool's result is recorded; the step never commits
        job_id = local.start("big_tool", None)
        view = local.wait(job_id)
        (entry,) = local.runtimes[0].services.ledger.list(job_id)

    assert [c.point for c in local.crashes] == ["after_record"]
    assert view.status is JobStatus.COMPLETED and view.result == MIB
    assert calls.steps["fetch"] == 2 and calls.effects["download"] == 1
    assert is_reference(entry["result"]) and len(entry["result"]) < 1024


def test_big_signal_payload_travels_by_reference_and_is_consumed() -> None:
    document = {"pages": ["d" * MIB]}
    with LocalRuntime(payload_app(Calls())) as local:
        job_id = local.start("big_signal", None)
        local.run_until_idle()
        local.signal(job_id, "document", document)
        view = local.wait(job_id)
        (inbox,) = local.runtimes[0].services.inbox.table.query(
            KeyConditionExpression="pk = :job", ExpressionAttributeValues={":job": {"S": job_id}}
        )
        consumed = [e for e in local.events(job_id) if e.type is EventType.SIGNAL_CONSUMED]

    assert view.status is JobStatus.COMPLETED and view.result == len(str(document))
    assert is_reference(inbox["payload"]) and len(inbox["payload"]) < 1024
    assert consumed[0].result_json() == document


def test_value_over_the_offload_cap_fails_the_step_at_once_with_payload_too_large() -> None:
    calls = Calls()
    with LocalRuntime(payload_app(calls), overrides={"max_offloaded_bytes": 2 * MIB}) as local:
        job_id = local.start("big_step", 3 * MIB)
        view = local.wait(job_id)
        failed = [e for e in local.events(job_id) if e.type is EventType.STEP_FAILED]
        objects = local.s3.list_objects_v2(Bucket=local.stack.payload_bucket).get("KeyCount", 0)

    assert view.status is JobStatus.FAILED
    assert view.error is not None and view.error.type == "aetheris.errors.PayloadTooLarge"
    assert "limit is 2097152 bytes" in view.error.message
    assert calls.steps["produce"] == 1  # terminal: one attempt, no retry
    assert len(failed) == 1 and failed[0].next_attempt_at is None
    assert objects == 0


@pytest.mark.parametrize(
    ("size", "status"), [(200 * 1024, JobStatus.COMPLETED), (300 * 1024, JobStatus.FAILED)]
)
def test_without_a_bucket_values_stay_inline_under_the_256_kib_cap(size: int, status: JobStatus) -> None:
    calls = Calls()
    with LocalRuntime(payload_app(calls), overrides={"payload_bucket": None}) as local:
        job_id = local.start("big_step", size)
        view = local.wait(job_id)
        stored = [e.get("result") for e in raw_events(local, job_id)]

    assert view.status is status
    assert not any(is_reference(s) for s in stored)
    if status is JobStatus.FAILED:
        assert view.error is not None and view.error.type == "aetheris.errors.PayloadTooLarge"
        assert "limit is 262144 bytes" in view.error.message
        assert calls.steps["produce"] == 1


def test_a_failed_s3_put_retries_the_tick_and_the_job_completes() -> None:
    calls = Calls()
    failures = {"left": 1}

    def slow_down(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "PutObject"
            )

    with LocalRuntime(payload_app(calls)) as local:
        local.s3.meta.events.register("before-call.s3.PutObject", slow_down)
        job_id = local.start("big_step", MIB)
        view = local.wait(job_id)
        events = local.events(job_id)

    assert failures["left"] == 0, "no put failed: the test did not test anything"
    assert view.status is JobStatus.COMPLETED and view.result == MIB
    # Not the step's failure: no StepFailed, the retried tick is attempt 1 again and commits once.
    assert [e.type for e in events if e.name == "produce"] == [EventType.STEP_COMMITTED]
    assert next(e for e in events if e.name == "produce").attempt == 1
    assert calls.steps == {"produce": 2, "measure": 1}  # the body ran again: its result was never recorded


def test_a_corrupted_object_is_a_clear_error_naming_it() -> None:
    with LocalRuntime(payload_app(Calls())) as local:
        job_id = local.start("big_step", MIB)
        local.wait(job_id)
        (committed,) = [e for e in raw_events(local, job_id) if e.get("name") == "produce"]
        ref = PayloadRef.parse(committed["result"])
        assert ref is not None
        local.s3.put_object(Bucket=ref.bucket, Key=ref.key, Body=json.dumps("q" * MIB).encode())
        fresh = local._runtime("reader")  # a cold reader: nothing cached
        with pytest.raises(PayloadCorrupted) as raised:
            fresh.events(job_id)

    assert ref.key in str(raised.value) and ref.sha256 in str(raised.value)


def test_a_missing_object_under_a_running_job_fails_it_once_and_clearly() -> None:
    calls = Calls()
    with LocalRuntime(payload_app(calls)) as local:
        job_id = local.start("produce_wait_measure", MIB)
        local.run_until_idle()
        (committed,) = [e for e in raw_events(local, job_id) if e.get("name") == "produce"]
        ref = PayloadRef.parse(committed["result"])
        assert ref is not None
        local.s3.delete_object(Bucket=ref.bucket, Key=ref.key)  # as the lifecycle rule would
        for rt in local.runtimes:
            rt.services.payloads._cache.clear()  # cold workers
        local.signal(job_id, "go")
        view = local.wait(job_id)

    assert view.status is JobStatus.FAILED
    assert view.error is not None and view.error.type == "aetheris.errors.PayloadCorrupted"
    assert "no object" in view.error.message and ref.key in view.error.message
    assert calls.steps == {"produce": 1}


def test_a_recorded_json_text_is_never_taken_for_a_reference() -> None:
    for value in ["@s3{}", {"@s3": 1}, "@s3" * 10]:
        text = json.dumps(value)
        assert not is_reference(text) and PayloadRef.parse(text) is None


def test_at_most_once_big_tool_result_is_offloaded_like_any_other() -> None:
    app = App("at-most-once")
    calls = Calls()

    def fetch(sctx: StepContext) -> int:
        text = sctx.tool(
            "download",
            lambda: calls.effect("download", "k") and "t" * MIB,
            semantics=EffectSemantics.AT_MOST_ONCE,
        )
        return len(str(text))

    @app.job("fetch")
    def job(ctx: JobContext, _: None) -> int:
        return ctx.step(fetch)

    with LocalRuntime(app) as local:
        view = local.wait(local.start("fetch", None))

    assert view.status is JobStatus.COMPLETED and view.result == MIB and calls.effects["download"] == 1


def test_event_pages_are_measured_with_the_values_resolved() -> None:
    from aetheris._store.listing import Listing

    with LocalRuntime(payload_app(Calls())) as local:
        job_id = local.start("big_step", MIB)
        local.wait(job_id)
        services = local.runtimes[0].services
        listing = Listing(services.jobs.table)
        first = listing.events(job_id, 10, max_bytes=MIB // 2, resolve=services.payloads.resolve)
        assert first is not None and first.next_cursor is not None
        second = listing.events(job_id, 10, first.next_cursor, MIB // 2, services.payloads.resolve)

    assert [e["type"] for e in first.items] == [EventType.JOB_CREATED]  # the big one would pass the budget
    assert second is not None and [e["type"] for e in second.items] == [EventType.STEP_COMMITTED]
    assert json.loads(second.items[0]["result"]) == "p" * MIB


def test_idempotent_start_with_a_big_input_compares_the_values_not_the_references() -> None:
    from aetheris import IdempotencyConflict

    with LocalRuntime(payload_app(Calls())) as local:
        runtime = local.runtimes[1]  # a cold runtime: it reads the first input back from S3
        first = local.runtimes[0].start("echo", "a" * MIB, idempotency_key="k1")
        again = runtime.start("echo", "a" * MIB, idempotency_key="k1")
        with pytest.raises(IdempotencyConflict):
            runtime.start("echo", "b" * MIB, idempotency_key="k1")

    assert (first.created, again.created, again.job_id) == (True, False, first.job_id)
