"""Fan-out under concurrency, crashes, cancels and replay (moto server: workers race for real)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from aetheris import (
    CRASH_POINTS,
    App,
    EventType,
    JobContext,
    JobStatus,
    NondeterminismError,
    StepContext,
    hosting,
)
from aetheris._store.branches import BranchStore
from aetheris.handlers.worker import handler
from aetheris.testing import LocalRuntime, replay
from aetheris_infra.lambda_events import LocalLambdaContext, sqs_event

DEADLINE = 20.0  # seconds a handshake between branch bodies may take before the test fails


class Probe:
    """What the branch bodies saw: how many ran at once, the tool calls per key."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.bodies: dict[int, int] = {}
        self.calls: dict[str, int] = {}
        self.together = threading.Event()
        self.last_done = threading.Event()  # the last branch's body has returned

    def enter(self, n: int) -> None:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.bodies[n] = self.bodies.get(n, 0) + 1
            if self.running >= 2:
                self.together.set()

    def leave(self) -> None:
        with self.lock:
            self.running -= 1

    def call(self, key: str) -> str:
        with self.lock:
            self.calls[key] = self.calls.get(key, 0) + 1
        return f"done-{key.rsplit(':', 3)[1]}"


def build(probe: Probe, rendezvous: bool, reverse: bool = False) -> App:
    app = App("fanrace")

    def work(sctx: StepContext, n: int) -> str:
        probe.enter(n)
        try:
            if rendezvous and n < 2:  # branches 0 and 1 each wait until another branch runs too
                assert probe.together.wait(DEADLINE), "no second branch ever ran at the same time"
            if reverse and n == 0:  # the first branch finishes after the last one
                assert probe.last_done.wait(DEADLINE), "the last branch never finished"
            answer = sctx.tool("api", probe.call, sctx.idempotency_key("api"))
            if n == 1:
                probe.last_done.set()
            return answer
        finally:
            probe.leave()

    def undo(sctx: StepContext, n: int) -> None:
        sctx.tool("undo", probe.call, sctx.idempotency_key("undo"))

    @app.job("fan")
    def fan(ctx: JobContext, spec: dict[str, Any]) -> list[str]:
        results = ctx.map(work, range(spec["count"]), max_concurrency=spec.get("limit"), compensate=undo)
        if spec.get("wait_after"):
            ctx.wait_for_signal("go")
        return results

    return app


def drive(local: LocalRuntime, job_id: str, workers: int = 3) -> None:
    """Workers on ``workers`` threads, each taking one message at a time, until the job ends."""
    stop = threading.Event()

    def loop(worker: int) -> None:
        while not stop.is_set():
            got = local.sqs.receive_message(
                QueueUrl=local.stack.step_queue_url,
                MaxNumberOfMessages=1,
                WaitTimeSeconds=1,
                MessageSystemAttributeNames=["All"],
            ).get("Messages", [])
            for message in got:
                event = sqs_event(
                    [message], local.sources[worker % len(local.sources)].queue_arn, "us-east-1"
                )
                with hosting.bound(local.runtimes[worker % len(local.runtimes)]):
                    answer = handler(event, LocalLambdaContext())
                if not answer["batchItemFailures"]:
                    local.sqs.delete_message(
                        QueueUrl=local.stack.step_queue_url, ReceiptHandle=message["ReceiptHandle"]
                    )
            if local.get(job_id).status.is_terminal:
                stop.set()

    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(loop, w) for w in range(workers)]
        for future in futures:
            future.result(timeout=120)


def branch_commits(local: LocalRuntime, job_id: str, op: int) -> dict[int, int]:
    branches = BranchStore(local.runtimes[0].services.jobs.table).load(job_id, op)
    return {
        b: sum(1 for e in lane.events if e.type is EventType.STEP_COMMITTED)
        for b, lane in branches.lanes.items()
    }


def test_branches_run_concurrently_on_separate_workers() -> None:
    probe = Probe()
    with LocalRuntime(build(probe, rendezvous=True), server=True, workers=3) as local:
        job_id = local.start("fan", {"count": 4})
        drive(local, job_id)
        view = local.get(job_id)
        commits = branch_commits(local, job_id, 0)
        workers = {
            e.worker_id
            for e in BranchStore(local.runtimes[0].services.jobs.table).load(job_id, 0).lanes[0].events
        }

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == [f"done-0-work.{n}" for n in range(4)]
    assert probe.together.is_set() and probe.most >= 2
    assert commits == {b: 1 for b in range(4)} and probe.bodies == {b: 1 for b in range(4)}
    assert len(workers) == 1


def test_max_concurrency_is_never_exceeded() -> None:
    probe = Probe()
    with LocalRuntime(build(probe, rendezvous=True), server=True, workers=3) as local:
        job_id = local.start("fan", {"count": 7, "limit": 2})
        drive(local, job_id, workers=3)
        view = local.get(job_id)

    assert view.status is JobStatus.COMPLETED, view.error
    assert probe.most == 2, f"at most 2 at a time, and 2 did run together (saw {probe.most})"
    assert probe.bodies == {b: 1 for b in range(7)}


def test_two_branches_settling_at_once_send_one_join_tick() -> None:
    """Both last branches see every branch settled: the join marker lets one tick out."""
    probe = Probe()
    with LocalRuntime(build(probe, rendezvous=False), server=True) as local:
        job_id = local.start("fan", {"count": 2})
        local.run_until_idle()
        view = local.get(job_id)
        services = local.runtimes[0].services
        store = BranchStore(services.jobs.table)
        branches = store.load(job_id, 0)
        # Replay what the two finishers do after their commits, at the same instant: both ask.
        ttl = services.log.lifetime.provisional(local.clock.now())
        asked = [store.mark_join(job_id, 0, 2, b, ttl) for b in (0, 1)]
        older = store.mark_join(job_id, 0, 1, 0, ttl)

    assert view.status is JobStatus.COMPLETED
    assert branches.join is not None and int(branches.join["settled"]) == 2
    assert asked.count(True) == 1, "only the finisher that asked first may ask again with that view"
    assert not older, "an older view never asks again"


def test_simultaneous_finishers_enqueue_the_join_once() -> None:
    probe = Probe()
    sent: list[dict[str, Any]] = []
    with LocalRuntime(build(probe, rendezvous=True), server=True, workers=2) as local:
        job_id = local.start("fan", {"count": 2})

        def count(params: dict[str, Any], **_: Any) -> None:
            body = json.loads(params["MessageBody"])
            if "branch" not in body and body.get("seq", 0) > 1:
                sent.append(body)

        local.sqs.meta.events.register("before-parameter-build.sqs.SendMessage", count)
        drive(local, job_id, workers=2)
        view = local.get(job_id)

    assert view.status is JobStatus.COMPLETED, view.error
    joins = [b for b in sent if b["seq"] == 2]  # JobCreated 0, FanOutStarted 1, the join tick is for 2
    assert len(joins) == 1, f"the join tick went out {len(joins)} times"


@pytest.mark.parametrize(
    "point", [p for p in CRASH_POINTS if p not in ("before_retention", "after_inbox_write")]
)
def test_a_crash_at_each_point_of_a_branch_changes_no_outcome(point: str) -> None:
    probe = Probe()
    with LocalRuntime(build(probe, rendezvous=False)) as local:
        local.crash_at(point, times=3)  # the fan-out's start, and the first branches to reach it
        job_id = local.start("fan", {"count": 3})
        view = local.wait(job_id, timeout=60)
        commits = branch_commits(local, job_id, 0)

    assert view.status is JobStatus.COMPLETED, view.error
    assert view.result == [f"done-0-work.{n}" for n in range(3)]
    assert commits == {0: 1, 1: 1, 2: 1}, "every branch committed exactly once"
    assert local.crashes, "the crash point was reached"
    repeated = {key: n for key, n in probe.calls.items() if n > 1}
    if point != "after_effect":
        assert not repeated, f"only a crash between the call and its record repeats a call: {repeated}"
    else:
        assert sum(n - 1 for n in repeated.values()) <= len(local.crashes)  # one repeat per crash there


def test_cancel_mid_fan_out_undoes_the_branches_that_committed() -> None:
    probe = Probe()
    with LocalRuntime(build(probe, rendezvous=False)) as local:
        job_id = local.start("fan", {"count": 3, "wait_after": True})
        local.run_until_idle()
        assert local.get(job_id).status is JobStatus.WAITING  # on the signal, branches all done
        local.cancel(job_id)
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.CANCELLED
    undos = sorted(k for k in probe.calls if ":undo:" in k)
    assert len(undos) == 3 and all(probe.calls[k] == 1 for k in undos)
    assert sum(1 for e in events if e.type is EventType.COMPENSATION_COMMITTED) == 3


def test_cancel_while_branches_run_stops_the_rest_and_undoes_what_committed() -> None:
    probe = Probe()
    with LocalRuntime(build(probe, rendezvous=False)) as local:
        job_id = local.start("fan", {"count": 4, "limit": 1})
        # Run the fan-out's start and the first branch only.
        for _ in range(3):
            local.sources[0].poll_once()
        local.cancel(job_id)
        view = local.wait(job_id)
        events = local.events(job_id)

    assert view.status is JobStatus.CANCELLED
    ran = len(probe.bodies)
    assert 1 <= ran < 4, f"branches after the cancel never start (ran {ran})"
    undone = [e for e in events if e.type is EventType.COMPENSATION_COMMITTED]
    assert len(undone) == sum(1 for k in probe.calls if ":api:" in k)


def test_replay_is_deterministic_whatever_order_branches_finished_in() -> None:
    probe = Probe()
    with LocalRuntime(build(probe, rendezvous=False, reverse=True), server=True, workers=3) as local:
        job_id = local.start("fan", {"count": 2})
        drive(local, job_id)
        lanes = BranchStore(local.runtimes[0].services.jobs.table).load(job_id, 0).lanes
        assert lanes[1].events[-1].at <= lanes[0].events[-1].at, "branch 1 committed first"
        assert local.get(job_id).result == ["done-0-work.0", "done-0-work.1"], (
            "yet results are in input order"
        )
        report = local.replay(job_id)
        history = local.export(job_id)
    assert report.consistent and report.reached_end, report
    again = replay(build(Probe(), rendezvous=False), history)
    assert again.consistent and again.reached_end and again.output_matches


def test_a_changed_branch_list_is_a_named_divergence() -> None:
    probe = Probe()
    app = build(probe, rendezvous=False)
    with LocalRuntime(app) as local:
        job_id = local.start("fan", {"count": 3, "wait_after": True})
        local.run_until_idle()
        history = local.export(job_id)

    changed = App("fanrace")

    @changed.job("fan")
    def fan(ctx: JobContext, spec: dict[str, Any]) -> list[str]:
        return ctx.map(lambda sctx, n: n, range(spec["count"] + 1), name="work")

    report = replay(changed, history)
    assert not report.consistent
    assert "fan-out 'work' of 3 branches" in str(report.divergence)
    assert "of 4 branches" in str(report.divergence)
    assert isinstance(report.divergence, NondeterminismError)
