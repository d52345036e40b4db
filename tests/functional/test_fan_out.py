"""Fan-out (``ctx.map`` / ``ctx.parallel``) on real DynamoDB/SQS semantics (moto).

Every branch body counts its real executions; the branch slots are read back from the store.
"""

from __future__ import annotations

import functools
import threading
from collections import Counter
from typing import Any

import pytest

from aetheris import (
    App,
    BatchResult,
    BranchStatus,
    Completion,
    CompletionReason,
    EventType,
    FanOutFailed,
    JobContext,
    JobStatus,
    NonRetryableError,
    RetryPolicy,
    StepContext,
)
from aetheris.testing import LocalRuntime

EXCEEDED = "FAILURE_TOLERANCE_EXCEEDED"


class Flaky(Exception):
    pass


class Counted:
    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.lock = threading.Lock()

    def hit(self, name: str) -> int:
        with self.lock:
            self.calls[name] += 1
            return self.calls[name]


def build(counted: Counted) -> App:
    app = App("fan")

    def square(sctx: StepContext, n: int) -> int:
        counted.hit(f"square-{n}")
        return n * n

    @app.job("squares")
    def squares(ctx: JobContext, count: int) -> dict[str, Any]:
        before = ctx.step(lambda sctx: "before")
        values = ctx.map(square, range(count))
        after = ctx.step(lambda sctx: sum(values))
        return {"before": before, "values": values, "after": after}

    def sometimes(sctx: StepContext, n: int) -> int:
        attempt = counted.hit(f"flaky-{n}")
        if n == 3 and attempt < 3:
            raise Flaky(f"branch {n} attempt {attempt}")
        return n

    @app.job("flaky_map")
    def flaky_map(ctx: JobContext, count: int) -> list[int]:
        return ctx.map(sometimes, range(count), retry=RetryPolicy(max_attempts=3, initial_delay_s=0))

    def fails_for(bad: set[int], sctx: StepContext, n: int) -> int:
        counted.hit(f"rule-{n}")
        if n in bad:
            raise NonRetryableError(f"branch {n} is bad")
        return n

    @app.job("with_rule")
    def with_rule(ctx: JobContext, spec: dict[str, Any]) -> dict[str, Any]:
        rule = Completion(**spec["rule"])
        fn = functools.partial(fails_for, set(spec["bad"]))
        try:
            batch: BatchResult = ctx.map(fn, range(spec["count"]), completion=rule, name="ruled")
        except FanOutFailed as failed:
            return {"breached": failed.batch.reason.value, "message": str(failed)}
        return {
            "reason": batch.reason.value,
            "statuses": [item.status.value for item in batch.items],
            "results": batch.results(),
        }

    @app.job("fail_fast")
    def fail_fast(ctx: JobContext, count: int) -> str:
        fn = functools.partial(fails_for, {1})
        try:
            ctx.map(fn, range(count), max_concurrency=1, name="ff")
        except NonRetryableError as error:
            return f"caught: {error}"
        return "no error"

    @app.job("branches")
    def branches(ctx: JobContext, _: Any) -> list[Any]:
        return ctx.parallel(
            [
                lambda sctx: counted.hit("a") and "a",
                functools.partial(square, n=4),
                lambda sctx: counted.hit("c") and {"c": [1, 2]},
            ]
        )

    return app


def test_ten_branch_map_runs_each_branch_once_and_returns_results_in_order() -> None:
    counted = Counted()
    with LocalRuntime(build(counted)) as local:
        job_id = local.start("squares", 10)
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == {"before": "before", "values": [n * n for n in range(10)], "after": 285}
    assert counted.calls == {f"square-{n}": 1 for n in range(10)}
    kinds = [e.type for e in events]
    assert kinds.count(EventType.FAN_OUT_STARTED) == 1 and kinds.count(EventType.FAN_OUT_JOINED) == 1


def test_parallel_takes_lambdas_and_partials() -> None:
    counted = Counted()
    with LocalRuntime(build(counted)) as local:
        view = local.wait(local.start("branches", None))
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == ["a", 16, {"c": [1, 2]}]
    assert counted.calls == {"a": 1, "square-4": 1, "c": 1}


def test_a_failing_branch_is_retried_by_its_policy_alone() -> None:
    counted = Counted()
    with LocalRuntime(build(counted)) as local:
        view = local.wait(local.start("flaky_map", 5))
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == [0, 1, 2, 3, 4]
    assert counted.calls["flaky-3"] == 3
    assert all(counted.calls[f"flaky-{n}"] == 1 for n in (0, 1, 2, 4))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"count": 5, "bad": [1, 3], "rule": {"tolerated_failure_count": 2}},
            {"reason": "ALL_COMPLETED", "results": [0, 2, 4]},
        ),
        (
            {"count": 5, "bad": [1, 3, 4], "rule": {"tolerated_failure_count": 2}},
            {"breached": "FAILURE_TOLERANCE_EXCEEDED"},
        ),
        (
            {"count": 4, "bad": [0, 1, 2], "rule": {"min_successful": 2}},
            {"breached": "FAILURE_TOLERANCE_EXCEEDED"},
        ),
        ({"count": 4, "bad": [2], "rule": {"tolerated_failure_percentage": 25}}, {"reason": "ALL_COMPLETED"}),
    ],
)
def test_completion_rules(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    counted = Counted()
    with LocalRuntime(build(counted)) as local:
        view = local.wait(local.start("with_rule", spec))
    assert view.status is JobStatus.COMPLETED, view.error
    assert {k: view.result[k] for k in expected} == expected
    assert all(count == 1 for count in counted.calls.values())


def test_min_successful_reached_stops_starting_branches() -> None:
    counted = Counted()
    spec = {"count": 6, "bad": [], "rule": {"min_successful": 2}}
    app = build(counted)
    with LocalRuntime(app) as local:
        view = local.wait(local.start("with_rule", spec))
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result["reason"] == CompletionReason.MIN_SUCCESSFUL_REACHED.value
    assert len(view.result["results"]) >= 2


def test_default_mode_raises_the_first_failure_and_never_starts_the_rest() -> None:
    counted = Counted()
    with LocalRuntime(build(counted)) as local:
        view = local.wait(local.start("fail_fast", 5))
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == "caught: branch 1 is bad"
    assert counted.calls == {"rule-0": 1, "rule-1": 1}  # max_concurrency=1: 2, 3, 4 never ran


def test_max_concurrency_below_one_is_a_clear_error() -> None:
    app = App("bad")

    @app.job("bad")
    def bad(ctx: JobContext, _: Any) -> Any:
        return ctx.map(lambda sctx, n: n, [1, 2], max_concurrency=0)

    with LocalRuntime(app) as local:
        view = local.wait(local.start("bad", None))
    assert view.status is JobStatus.FAILED
    assert (
        view.error is not None
        and "max_concurrency must be a whole number of at least 1" in view.error.message
    )
    assert BranchStatus.CANCELLED.value == "CANCELLED"


def test_the_trace_shows_each_branch_as_a_row_beside_its_fan_out() -> None:
    counted = Counted()
    with LocalRuntime(build(counted)) as local:
        job_id = local.start("squares", 3)
        local.wait(job_id)
        trace = local.trace(job_id)

    fan_out = next(op for op in trace.operations if op.kind.value == "fanout")
    branches = [op for op in trace.operations if op.branch is not None]
    assert fan_out.state == "joined" and fan_out.result["succeeded"] == 3
    assert [(b.fan_out, b.branch, b.name, b.state) for b in branches] == [
        (fan_out.index, n, f"square.{n}", "committed") for n in range(3)
    ]
    assert all(len(b.attempts) == 1 and b.attempts[0].outcome == "committed" for b in branches)
    positions = [op.index for op in trace.operations]
    assert positions == sorted(positions), "branches follow their fan-out"


def test_a_bare_except_around_a_fan_out_cannot_swallow_it() -> None:
    counted = Counted()
    app = App("greedy")

    def square(sctx: StepContext, n: int) -> int:
        counted.hit(f"sq-{n}")
        return n * n

    @app.job("greedy")
    def greedy(ctx: JobContext, count: int) -> Any:
        try:
            values = ctx.map(square, range(count))
        except:  # noqa: E722 - on purpose: user code that catches what the runtime raises
            values = "swallowed"
        return {"values": values, "after": ctx.step(lambda sctx: "after")}

    with LocalRuntime(app) as local:
        view = local.wait(local.start("greedy", 4))
    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == {"values": [0, 1, 4, 9], "after": "after"}, "nothing swallowed was committed"
    assert counted.calls == {f"sq-{n}": 1 for n in range(4)}
