"""Every write is bounded: oversized errors, values that cannot be read back, failing ticks.

Each failure path ends: a tool or step raising a ~200 KB message is recorded (cut, with the whole
text kept in the payload bucket) and retried only as its policy says; a result JSON cannot hold is
a clear terminal error at the step; a tick that fails the same way every time ends the job.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, JobStatus, RetryPolicy, StepContext
from aetheris.errors import MAX_MESSAGE_CHARS
from aetheris.testing import LocalRuntime
from tests.functional.jobs import Calls

BIG = 200 * 1024


class Refused(Exception):
    pass


def big_error_app(calls: Calls) -> App:
    app = App("big-errors")

    def noisy_api(key: str) -> str:
        calls.effect("noisy", key)
        raise Refused("upstream said: " + "é" * BIG)

    def call_noisy(sctx: StepContext) -> str:
        calls.step("call_noisy")
        return sctx.tool(
            "noisy", noisy_api, sctx.idempotency_key("noisy"), retry=RetryPolicy(max_attempts=2, jitter=0)
        )

    @app.job("big_tool_error")
    def big_tool_error(ctx: JobContext, _: None) -> str:
        return ctx.step(call_noisy, retry=RetryPolicy(max_attempts=3, jitter=0))

    def loud(sctx: StepContext) -> str:
        calls.step("loud")
        raise Refused("x" * BIG)

    @app.job("big_step_error")
    def big_step_error(ctx: JobContext, _: None) -> str:
        return ctx.step(loud, retry=RetryPolicy(max_attempts=2, jitter=0))

    return app


@pytest.mark.parametrize("bucket", [True, False])
def test_tool_raising_a_huge_error_is_called_only_as_its_policy_allows(bucket: bool) -> None:
    calls = Calls()
    overrides = {} if bucket else {"payload_bucket": None}
    with LocalRuntime(big_error_app(calls), overrides=overrides) as local:
        view = local.wait(local.start("big_tool_error"))
        failures = [e for e in local.events(view.job_id) if e.type is EventType.STEP_FAILED]
        full = (
            local.runtimes[0].services.payloads.json(view.error.full)
            if view.error and view.error.full
            else None
        )

    assert view.status is JobStatus.FAILED and view.error is not None
    assert calls.effects["noisy"] == 3 * 2, "3 step attempts x 2 tool attempts, never more"
    assert calls.steps["call_noisy"] == 3 and len(failures) == 3
    assert view.error.type.endswith("Refused")
    assert len(view.error.message) < MAX_MESSAGE_CHARS + 100 and "truncated" in view.error.message
    if bucket:
        assert isinstance(full, str) and len(full) > BIG, "the whole text is kept in the payload bucket"
    else:
        assert view.error.full is None


def test_step_raising_a_huge_error_ends_by_its_policy() -> None:
    calls = Calls()
    with LocalRuntime(big_error_app(calls), overrides={"payload_bucket": None}) as local:
        view = local.wait(local.start("big_step_error"))

    assert view.status is JobStatus.FAILED and view.error is not None
    assert calls.steps["loud"] == 2
    assert view.error.message.startswith("xxx") and "truncated" in view.error.message


def odd_results_app() -> App:
    app = App("odd-results")

    def returns(sctx: StepContext, kind: str) -> float:
        values: dict[str, Any] = {"nan": math.nan, "inf": math.inf, "overflow": float("1e400")}
        return float(values[kind])

    def returns_any(sctx: StepContext, kind: str) -> Any:
        deep: list[Any] = []
        node = deep
        for _ in range(5000):
            node.append([])
            node = node[0]
        return {"huge_int": 10**5000, "surrogate": "\ud800", "deep": deep}[kind]

    @app.job("odd_float")
    def odd_float(ctx: JobContext, kind: str) -> float:
        return ctx.step(returns, kind, retry=RetryPolicy(max_attempts=3))

    @app.job("odd_any")
    def odd_any(ctx: JobContext, kind: str) -> Any:
        return ctx.step(returns_any, kind, retry=RetryPolicy(max_attempts=3))

    return app


@pytest.mark.parametrize(
    ("job_type", "kind"),
    [
        ("odd_float", "nan"),
        ("odd_float", "inf"),
        ("odd_float", "overflow"),
        ("odd_any", "huge_int"),
        ("odd_any", "surrogate"),
        ("odd_any", "deep"),
    ],
)
def test_step_result_json_cannot_hold_fails_the_step_clearly_without_retries(
    job_type: str, kind: str
) -> None:
    with LocalRuntime(odd_results_app()) as local:
        view = local.wait(local.start(job_type, kind))
        failures = [e for e in local.events(view.job_id) if e.type is EventType.STEP_FAILED]

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris._values.UnstorableValue", view.error
    assert "result of step returns" in view.error.message
    assert len(failures) == 1, "not retried: the same value would be refused again"


def test_tick_that_fails_the_same_way_every_time_ends_the_job_with_that_error() -> None:
    """A store write that always fails (here: the commit) must not loop: the crash-loop guard ends
    the job FAILED naming the error, and the step ran at most ``max_slot_claims`` times."""
    calls = Calls()
    app = App("always-failing-tick")

    def work(sctx: StepContext) -> str:
        calls.step("work")
        return "done"

    @app.job("doomed")
    def doomed(ctx: JobContext, _: None) -> str:
        return ctx.step(work)

    with LocalRuntime(app) as local:
        from botocore.exceptions import ClientError

        for rt in local.runtimes:
            log = rt.services.log
            original = log.commit

            def failing_commit(
                lease: Any, event: dict[str, Any], *args: Any, _o: Any = original, **kw: Any
            ) -> None:
                if event["type"] == EventType.STEP_COMMITTED.value:
                    error = {"Error": {"Code": "ValidationException", "Message": "Item size too large"}}
                    raise ClientError(error, "UpdateItem")  # type: ignore[arg-type]
                _o(lease, event, *args, **kw)

            log.commit = failing_commit  # type: ignore[method-assign]
        view = local.wait(local.start("doomed"), timeout=60)
        last = local.events(view.job_id)[-1]

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.WorkerCrashLoop"
    assert "Item size too large" in view.error.message
    assert calls.steps["work"] <= local.settings.max_slot_claims
    assert last.type is EventType.JOB_FAILED
    assert json.loads(json.dumps(last.detail)) is not None
