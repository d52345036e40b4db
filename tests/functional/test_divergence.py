"""Changed code under recorded jobs: every kind of divergence is named; versions are respected."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from aetheris import App, EventType, JobContext, JobStatus, StepContext, TickOutcome
from aetheris._engine.worker import Worker
from aetheris._store.queue import Tick
from aetheris.testing import LocalRuntime


def a(sctx: StepContext) -> str:
    return "a"


def b(sctx: StepContext) -> str:
    return "b"


def c(sctx: StepContext) -> str:
    return "c"


def original(ctx: JobContext, _: None) -> str:
    ctx.step(a)
    ctx.wait_for_signal("go", timeout=timedelta(days=1))
    ctx.step(b)
    return "done"


def reordered(ctx: JobContext, _: None) -> str:
    ctx.step(b)
    ctx.wait_for_signal("go", timeout=timedelta(days=1))
    ctx.step(a)
    return "done"


def renamed(ctx: JobContext, _: None) -> str:
    ctx.step(a, name="a_v2")
    ctx.wait_for_signal("go", timeout=timedelta(days=1))
    ctx.step(b)
    return "done"


def inserted(ctx: JobContext, _: None) -> str:
    ctx.step(a)
    ctx.step(c)
    ctx.wait_for_signal("go", timeout=timedelta(days=1))
    ctx.step(b)
    return "done"


def wait_removed(ctx: JobContext, _: None) -> str:
    ctx.step(a)
    ctx.step(b)
    return "done"


def step_for_wait(ctx: JobContext, _: None) -> str:
    ctx.step(a)
    ctx.step(c, name="go")
    ctx.step(b)
    return "done"


def app_with(fn: Callable[[JobContext, None], str], version: str = "1") -> App:
    app = App("divergence")
    app.job("flow", version=version)(fn)
    return app


CASES = {
    "reordered steps": (reordered, 0, "step 'a'", "step 'b'"),
    "renamed step": (renamed, 0, "step 'a'", "step 'a_v2'"),
    "inserted step": (inserted, 1, "wait 'go'", "step 'c'"),
    "removed wait": (wait_removed, 1, "wait 'go'", "step 'b'"),
    "step turned into a wait": (step_for_wait, 1, "wait 'go'", "step 'go'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_replay_of_changed_code_names_position_recorded_and_requested(case: str) -> None:
    changed, position, recorded, requested = CASES[case]
    with LocalRuntime(app_with(original)) as local:
        job_id = local.start("flow", None)
        local.run_until_idle()
        local.signal(job_id, "go", True)
        local.wait(job_id)
        consistent = local.replay(job_id)
        local.app = app_with(changed)
        report = local.replay(job_id)

    assert consistent.consistent and consistent.operations == 4
    assert report.divergence is not None and not report.consistent
    assert report.divergence.position == position
    assert recorded in str(report.divergence) and requested in str(report.divergence)


@pytest.mark.parametrize("case", sorted(CASES))
def test_worker_meeting_changed_code_fails_the_job_with_the_divergence(case: str) -> None:
    changed, position, recorded, _ = CASES[case]
    with LocalRuntime(app_with(original)) as local:
        job_id = local.start("flow", None)
        local.run_until_idle()  # parked on the wait, after step a
        new_app = app_with(changed)
        for rt in local.runtimes:  # a deploy replaced the code under the running job
            rt.app = rt.worker.app = new_app
        local.signal(job_id, "go", True)
        view = local.wait(job_id)
        last = local.events(job_id)[-1]

    assert view.status is JobStatus.FAILED and view.error is not None
    assert view.error.type == "aetheris.errors.NondeterminismError"
    assert f"operation {position}" in view.error.message and recorded in view.error.message
    assert last.type is EventType.JOB_FAILED


def test_worker_without_the_recorded_version_refuses_to_advance_the_job() -> None:
    with LocalRuntime(app_with(original, version="1")) as local:
        job_id = local.start("flow", None)
        v2_only = Worker(app_with(wait_removed, version="2"), local.runtimes[1].services, "v2-worker")
        outcome = v2_only.handle(Tick(job_id=job_id, seq=1), receive_count=1)
        events = local.events(job_id)

    assert outcome is TickOutcome.DEFERRED
    assert [e.type for e in events] == [EventType.JOB_CREATED], "nothing ran against the wrong code"


def test_app_hosts_two_versions_side_by_side() -> None:
    app = App("versions")
    app.job("flow", version="1")(original)
    app.job("flow", version="2")(wait_removed)
    with LocalRuntime(app) as local:
        old = local.runtimes[0].start("flow", None, version="1").job_id
        new = local.start("flow", None)
        local.run_until_idle()
        local.signal(old, "go", True)
        views = [local.wait(old), local.wait(new)]

    assert [v.version for v in views] == ["1", "2"]
    assert all(v.status is JobStatus.COMPLETED for v in views)
