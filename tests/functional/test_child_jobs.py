"""Child jobs (``ctx.child``): started once, parent parked without a lease, result or error back,
cancel of the parent cancels the child — on real DynamoDB/SQS semantics (moto)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from aetheris import (
    App,
    ChildJobFailed,
    EventType,
    JobContext,
    JobStatus,
    NonRetryableError,
    StepContext,
)
from aetheris.testing import LocalRuntime


def build(calls: Counter[str]) -> App:
    app = App("family")

    def research(sctx: StepContext, topic: str) -> str:
        calls[f"research-{topic}"] += 1
        if topic == "bad":
            raise NonRetryableError(f"no sources for {topic}")
        return f"notes on {topic}"

    @app.job("researcher")
    def researcher(ctx: JobContext, topic: str) -> dict[str, str]:
        notes = ctx.step(research, topic)
        if topic == "slow":
            ctx.wait_for_signal("more")
        return {"topic": topic, "notes": notes}

    def undo(sctx: StepContext) -> None:
        calls["undo-plan"] += 1

    @app.job("lead")
    def lead(ctx: JobContext, topics: list[str]) -> dict[str, Any]:
        ctx.step(lambda sctx: calls.update(["plan"]) or "planned", compensate=undo)
        found: list[Any] = []
        for topic in topics:
            try:
                found.append(ctx.child("researcher", topic))
            except ChildJobFailed as failed:
                found.append({"failed": failed.status, "why": failed.error_message})
        return {"found": found}

    return app


def test_a_child_that_completes_returns_its_result_to_the_parent() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(build(calls)) as local:
        parent = local.start("lead", ["llamas", "owls"])
        view = local.wait(parent)
        child = local.get(f"{parent}.c1")
        events = local.events(parent)

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == {
        "found": [
            {"topic": "llamas", "notes": "notes on llamas"},
            {"topic": "owls", "notes": "notes on owls"},
        ]
    }
    assert calls["research-llamas"] == 1 and calls["research-owls"] == 1 and calls["plan"] == 1
    assert child.parent_id == parent and child.status is JobStatus.COMPLETED
    started = [e for e in events if e.type is EventType.CHILD_STARTED]
    assert [e.detail["child_id"] for e in started] == [f"{parent}.c1", f"{parent}.c2"]


def test_a_failed_child_is_the_parents_to_catch() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(build(calls)) as local:
        parent = local.start("lead", ["bad", "owls"])
        view = local.wait(parent)

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result["found"][0] == {"failed": "FAILED", "why": "no sources for bad"}
    assert view.result["found"][1]["notes"] == "notes on owls"


def test_parent_holds_no_lease_while_the_child_runs_and_cancel_cancels_the_child() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(build(calls)) as local:
        parent = local.start("lead", ["slow"])
        local.run_until_idle()
        child_id = f"{parent}.c1"
        assert local.get(parent).status is JobStatus.WAITING
        assert local.get(parent).waiting_for == f"child {child_id}"
        assert local.get(child_id).status is JobStatus.WAITING  # on its own signal
        local.cancel(parent)
        view = local.wait(parent)
        child = local.wait(child_id)

    assert view.status is JobStatus.CANCELLED
    assert calls["undo-plan"] == 1
    assert child.status is JobStatus.CANCELLED, "the parent-close policy cancels the running child"


@pytest.mark.parametrize("point", ["before_commit", "after_commit", "before_enqueue"])
def test_a_crash_around_starting_or_ending_a_child_starts_it_once(point: str) -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(build(calls)) as local:
        local.crash_at(point, times=4)
        parent = local.start("lead", ["llamas"])
        view = local.wait(parent, timeout=60)
        assert local.crashes
    assert view.status is JobStatus.COMPLETED, view.error
    assert calls["research-llamas"] == 1
    assert view.result["found"][0]["notes"] == "notes on llamas"


def test_the_child_belongs_to_the_parents_tenant() -> None:
    calls: Counter[str] = Counter()
    with LocalRuntime(build(calls)) as local:
        started = local.runtimes[0].start("lead", ["owls"], tenant="acme")
        local.wait(started.job_id)
        child = local.runtimes[0].services.jobs.get(f"{started.job_id}.c1")
    assert child is not None and child["tenant"] == "acme"


def test_job_detail_and_trace_link_parent_and_children() -> None:
    from aetheris.handlers.api_models import JobDetail

    calls: Counter[str] = Counter()
    with LocalRuntime(build(calls)) as local:
        parent = local.start("lead", ["owls"])
        local.wait(parent)
        detail = JobDetail.read(local.runtimes[0], parent)
        child = JobDetail.read(local.runtimes[0], f"{parent}.c1")
        trace = local.trace(parent)
        child_trace = local.trace(f"{parent}.c1")

    assert detail.children == [f"{parent}.c1"] and detail.parent_id is None
    assert child.parent_id == parent
    (op,) = [o for o in trace.operations if o.child_id is not None]
    assert op.child_id == f"{parent}.c1" and op.state == "committed"
    assert child_trace.parent_id == parent
