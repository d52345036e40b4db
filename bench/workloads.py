"""The jobs the benchmarks run, one per operation kind, and the loop that drives them to the end.

Each job takes ``n`` and performs ``n`` operations of its kind, so that running the same number of
jobs at two lengths separates what one operation costs from what a job costs once (start, end).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from aetheris import App, JobContext, StepContext

KINDS = ("step", "tool", "wait", "timer", "branch")
TIMER = timedelta(seconds=60)  # under SQS's 15-minute delay: the timer rides a delayed tick


def plain(sctx: StepContext, i: int) -> int:
    return i


def echo(value: int) -> int:
    return value


def with_tool(sctx: StepContext, i: int) -> int:
    return sctx.tool("echo", echo, i)


def build_app() -> App:
    app = App("bench")

    @app.job("step")
    def step_job(ctx: JobContext, n: int) -> int:
        return sum(ctx.step(plain, i) for i in range(n))

    @app.job("tool")
    def tool_job(ctx: JobContext, n: int) -> int:
        return sum(ctx.step(with_tool, i) for i in range(n))

    @app.job("wait")
    def wait_job(ctx: JobContext, n: int) -> int:
        return sum(int(ctx.wait_for_signal("go")["i"]) for _ in range(n))

    @app.job("timer")
    def timer_job(ctx: JobContext, n: int) -> int:
        for _ in range(n):
            ctx.sleep(TIMER)
        return n

    @app.job("branch")
    def branch_job(ctx: JobContext, n: int) -> int:
        # One fan-out of n effect-free branches: the difference between two n is one branch.
        return sum(ctx.map(plain, range(n)))

    return app


def drive(local: Any, job_ids: Iterable[str], meter: Any = None, timeout: float = 3600.0) -> None:
    """Run every job to its end the way production would: deliver ticks, answer each parked job's
    wait with a signal (sent as the API sends it), and let held timers come due on the fake clock.
    ``meter`` (optional) bills the signals to the API function and keeps the looking unbilled."""
    from aetheris.events import JobStatus

    pending = list(job_ids)
    while pending:
        local.run_until_idle(timeout=timeout)
        with meter.paused() if meter else _nothing():
            views = {job_id: local.get(job_id) for job_id in pending}
        pending = [j for j, v in views.items() if not v.status.is_terminal]
        waiting = [j for j in pending if views[j].status is JobStatus.WAITING]
        for i, job_id in enumerate(waiting):
            with meter.invocation("api") if meter else _nothing():
                local.signal(job_id, "go", {"i": i})
        if waiting:
            continue
        due = local.queue.next_due_in()
        if due is not None:
            local.clock.advance(due)
            local.queue.flush_due()
        elif pending:
            raise RuntimeError(
                f"{len(pending)} jobs are stuck, e.g. {pending[0]}: {views[pending[0]].status}"
            )


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None
