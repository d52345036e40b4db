"""``LocalStack`` (what ``aetheris dev`` runs): a message the stack sends wakes its idle pollers.

The pollers back off while their queues are empty. The stack's own sends (a job's first tick, the
API's signals, the ticks the workers enqueue) must not wait out that pause: these tests give the
pollers an idle pause far longer than their deadline, so only the wake-up can finish them in time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from aetheris import App, JobContext, StepContext
from aetheris_infra.local_stack import LocalStack

LONG_PAUSE = timedelta(seconds=120)
DEADLINE_S = 30.0


def build_app() -> App:
    app = App("wake")

    def one(sctx: StepContext, n: int) -> int:
        return n + 1

    @app.job("gated")
    def gated(ctx: JobContext, n: int) -> int:
        first = ctx.step(one, n)
        approval = ctx.wait_for_signal("go")
        return first + int(approval["add"])

    return app


@pytest.fixture
def stack() -> Iterator[LocalStack]:
    with LocalStack(build_app(), workers=1, idle_backoff=(LONG_PAUSE, LONG_PAUSE)) as running:
        time.sleep(0.2)  # let every poller find its queue empty and start its long pause
        yield running


def status_within(stack: LocalStack, job_id: str, wanted: str) -> str:
    runtime = stack.runtimes[0]
    deadline = time.monotonic() + DEADLINE_S
    status = ""
    while time.monotonic() < deadline:
        view = runtime.get(job_id)
        status = view.status.value if view else ""
        if status == wanted:
            return status
        time.sleep(0.01)
    return status


def test_local_stack_job_started_while_pollers_idle_runs_without_waiting_out_their_pause(
    stack: LocalStack,
) -> None:
    job_id = stack.runtimes[0].start("gated", 1).job_id
    assert status_within(stack, job_id, "WAITING") == "WAITING"


def test_local_stack_signal_to_waiting_job_resumes_it_without_waiting_out_the_pause(
    stack: LocalStack,
) -> None:
    runtime = stack.runtimes[0]
    job_id = runtime.start("gated", 1).job_id
    assert status_within(stack, job_id, "WAITING") == "WAITING"
    time.sleep(0.2)  # the pollers are idle again
    runtime.send_signal(job_id, "go", {"add": 40})
    assert status_within(stack, job_id, "COMPLETED") == "COMPLETED"
    view = runtime.get(job_id)
    assert view is not None and view.result == 42
