"""Control flow that user code cannot break: swallowed suspensions, foreign BaseExceptions, async
and generator steps, contexts used out of place, the determinism guard's common idiom."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, JobStatus, RetryPolicy, StepContext
from aetheris._store import schema
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls


def swallowing_app(calls: Calls) -> App:
    app = App("swallowing")

    def numbered(sctx: StepContext, n: int) -> int:
        calls.step(f"s{n}")
        calls.effect(f"e{n}", sctx.tool(f"t{n}", lambda: f"k{n}"))
        return n

    @app.job("bare_except")
    def bare_except(ctx: JobContext, _: None) -> list[int]:
        done = []
        for n in (1, 2, 3):
            try:
                done.append(ctx.step(numbered, n, name=f"s{n}"))
            except:  # noqa: E722 - the user code under test catches everything
                done.append(-n)
        return done

    @app.job("except_base")
    def except_base(ctx: JobContext, _: None) -> str:
        try:
            ctx.step(numbered, 1, name="s1")
        except BaseException:  # noqa: BLE001 - the user code under test catches everything
            return "gave up early"
        ctx.step(numbered, 2, name="s2")
        return "done"

    return app


@pytest.mark.parametrize("job_type", ["bare_except", "except_base"])
def test_job_that_swallows_suspend_commits_only_what_its_log_shows(
    job_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    with (
        caplog.at_level(logging.ERROR, logger="aetheris.worker"),
        LocalRuntime(swallowing_app(calls)) as local,
    ):
        job_id = local.start(job_type)
        view = local.wait(job_id)
        events = local.events(job_id)
        items = local.dynamodb.query(
            TableName=local.settings.jobs_table,
            KeyConditionExpression="pk = :j",
            ExpressionAttributeValues={":j": {"S": job_id}},
            ConsistentRead=True,
        )["Items"]

    steps = [e.name for e in events if e.type is EventType.STEP_COMMITTED]
    assert view.status is JobStatus.COMPLETED
    if job_type == "bare_except":
        assert view.result == [1, 2, 3], "the result of the real run, not of a half-run job"
        assert steps == ["s1", "s2", "s3"]
    else:
        assert view.result == "done" and steps == ["s1", "s2"]
    assert all(count == 1 for count in calls.steps.values()), calls.steps
    assert all(count == 1 for count in calls.effects.values()), "every effect the log shows, once"
    assert [e.type for e in events].count(EventType.JOB_COMPLETED) == 1
    ttl = [i for i in items if schema.TTL_ATTRIBUTE in i and i["sk"]["S"] != schema.JOB_SK]
    assert ttl, "the finished job expires"
    assert any("re-raise it" in r.getMessage() for r in caplog.records), "the except to fix is named"


def test_swallowed_suspend_never_gives_a_live_job_a_ttl() -> None:
    calls = Calls()
    with LocalRuntime(swallowing_app(calls)) as local:
        job_id = local.start("bare_except")
        local.runtimes[0].handle_tick(f'{{"job_id": "{job_id}", "seq": 1}}')  # s1 commits, then swallowed
        item = local.dynamodb.get_item(
            TableName=local.settings.jobs_table,
            Key={"pk": {"S": job_id}, "sk": {"S": schema.JOB_SK}},
            ConsistentRead=True,
        )["Item"]
        events = local.events(job_id)

    assert schema.TTL_ATTRIBUTE not in item
    assert item["status"]["S"] == "RUNNING"
    assert [e.type for e in events] == [EventType.JOB_CREATED, EventType.STEP_COMMITTED]
    assert calls.steps == {"s1": 1}


def test_step_raising_cancelled_error_is_retried_by_its_policy() -> None:
    calls = Calls()
    app = App("base-exceptions")

    def flaky(sctx: StepContext) -> str:
        calls.step("flaky")
        if sctx.attempt == 1:
            raise asyncio.CancelledError("the step's own task was cancelled")
        return "ok"

    @app.job("cancelled_error")
    def job(ctx: JobContext, _: None) -> str:
        return ctx.step(flaky, retry=RetryPolicy(max_attempts=3))

    with LocalRuntime(app) as local:
        view = local.wait(local.start("cancelled_error"))
        failed = [e for e in local.events(view.job_id) if e.type is EventType.STEP_FAILED]

    assert view.status is JobStatus.COMPLETED and view.result == "ok"
    assert calls.steps["flaky"] == 2
    assert failed[0].error is not None and failed[0].error.type == "asyncio.exceptions.CancelledError"


def test_async_steps_and_tools_are_awaited_within_the_step() -> None:
    calls = Calls()
    app = App("async")

    async def fetch(key: str) -> str:
        calls.effect("fetch", key)
        await asyncio.sleep(0)
        return f"page {key}"

    async def read(sctx: StepContext, n: int) -> str:
        calls.step("read")
        first = await sctx.tool("fetch", fetch, sctx.idempotency_key("fetch"))
        return f"{first} #{n}"

    def sync_step_with_async_tool(sctx: StepContext) -> str:
        calls.step("sync")
        result: str = sctx.tool("fetch", fetch, sctx.idempotency_key("fetch"))
        return result

    @app.job("async_job")
    def job(ctx: JobContext, _: None) -> list[str]:
        return [ctx.step(read, 7), ctx.step(sync_step_with_async_tool)]

    with LocalRuntime(app) as local:
        view = local.wait(local.start("async_job"))
        effects = local.runtimes[0].effects(view.job_id)

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result[0].startswith("page ") and view.result[0].endswith("#7")
    assert view.result[1].startswith("page ")
    assert calls.effects["fetch"] == 2 and len(effects) == 2


def test_generator_step_is_refused_with_a_clear_error() -> None:
    app = App("generators")

    def pages(sctx: StepContext) -> Any:
        yield 1

    @app.job("gen")
    def job(ctx: JobContext, _: None) -> Any:
        return ctx.step(pages)

    with LocalRuntime(app) as local:
        view = local.wait(local.start("gen"))

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.InvalidStep" and "generator" in view.error.message


def test_generator_job_function_is_refused_at_registration() -> None:
    app = App("generators")
    with pytest.raises(TypeError, match="generator"):

        @app.job("gen")
        def job(ctx: JobContext, _: None) -> Any:
            yield ctx.step(lambda sctx: 1)


def test_step_context_kept_after_its_step_cannot_record_a_call() -> None:
    kept: list[StepContext] = []
    calls = Calls()
    app = App("kept")

    def first(sctx: StepContext) -> str:
        kept.append(sctx)
        return "first"

    @app.job("kept_context")
    def job(ctx: JobContext, _: None) -> str:
        ctx.step(first)
        if kept:
            return kept[-1].tool("late", lambda: calls.effect("late", "k"))
        return "no context"

    with LocalRuntime(app) as local:
        view = local.wait(local.start("kept_context"))
        effects = local.runtimes[0].effects(view.job_id)

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.StepContextClosed"
    assert calls.effects["late"] == 0 and effects == []


def test_datetime_imported_by_name_is_refused_in_orchestration() -> None:
    app = App("clock")

    @app.job("reads_clock")
    def job(ctx: JobContext, _: None) -> str:
        return datetime.now().isoformat()  # this module did `from datetime import datetime`

    with LocalRuntime(app) as local:
        view = local.wait(local.start("reads_clock"))

    assert view.status is JobStatus.FAILED and view.error is not None
    assert "DeterminismViolation" in view.error.type and "ctx.now()" in view.error.message
    assert isinstance(datetime(2026, 1, 1), datetime), "the rebound name still behaves as the class"
