"""Golden histories of the support agent, replayed against today's code.

Each ``*.json`` here is a job of ``support.refund`` v"1" as recorded by ``record.py``: jobs that, in
production, could be half-way through when new code is deployed. Today's code must replay every one
to its recorded end without calling a single service, and a code change that would break such a job
(here: a step inserted into a copy of the agent) must be reported as a divergence at the point it
changed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from aetheris import App, EventType, JobContext, JobStatus, StepContext

# Imported before the first replay on purpose. Running a job function installs the determinism guard,
# which replaces ``datetime.datetime`` for the whole process; a pydantic model with a datetime field
# defined after that cannot be built. The handlers LocalRuntime imports lazily define such models (via
# Powertools' parser), so a later test in this process would fail. A runtime defect, reported.
from aetheris.handlers import signals, sweeper, worker  # noqa: F401
from aetheris.history import JobHistory
from aetheris.testing import replay
from agents import support
from agents.support import RefundRequest, RefundResult
from agents.tools import Order, registry
from tests.golden.record import SCENARIOS

GOLDEN_DIR = Path(__file__).resolve().parent
GOLDENS = list(SCENARIOS)
INSERTED_AT = 4  # plan, lookup_order, check_policy, decide, then the inserted step


@pytest.fixture(autouse=True)
def fresh_services() -> Iterator[None]:
    registry.reset()
    yield
    registry.reset()


def golden(name: str) -> Path:
    return GOLDEN_DIR / f"{name}.json"


def assert_no_service_was_called() -> None:
    assert registry.calls.by_service() == {}, "replay reached a service"
    assert not registry.payments.refunds and not registry.payments.reversals
    assert not registry.mail.outbox


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_replay_calls_no_service(name: str) -> None:
    report = replay(support.app, golden(name))

    assert report.operations >= INSERTED_AT + 1, "the replay served the recorded steps"
    assert_no_service_was_called()


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_replay_is_consistent_to_the_recorded_end(name: str) -> None:
    history = JobHistory.load(golden(name))

    report = replay(support.app, history)

    assert report.divergence is None, str(report.divergence)
    assert report.consistent and report.reached_end
    if history.job.status is JobStatus.COMPLETED:
        assert report.output_matches is True
    assert_no_service_was_called()


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_replay_of_agent_with_inserted_step_is_divergent_at_it(name: str) -> None:
    report = replay(agent_with_inserted_step(), golden(name))

    assert not report.consistent and report.divergence is not None
    assert report.divergence.position == INSERTED_AT
    assert "audit_decision" in report.divergence.requested
    assert_no_service_was_called()


def test_golden_files_record_the_paths_they_are_named_for() -> None:
    histories = {name: JobHistory.load(golden(name)) for name in GOLDENS}

    def only(name: str, *wanted: EventType) -> list[EventType]:
        return [e.type for e in histories[name].events if e.type in wanted]

    parking = (EventType.WAIT_STARTED, EventType.SIGNAL_CONSUMED, EventType.WAIT_TIMED_OUT)
    timer = (EventType.TIMER_STARTED, EventType.TIMER_FIRED)
    assert {(h.job.job_type, h.job.version) for h in histories.values()} == {("support.refund", "1")}
    assert only("happy", *parking) == [EventType.WAIT_STARTED, EventType.SIGNAL_CONSUMED]
    assert only("signalled", *parking) == [EventType.SIGNAL_CONSUMED]
    assert only("retried", *parking) == []
    assert only("retried", EventType.STEP_FAILED) == [EventType.STEP_FAILED]
    for name in ("happy", "retried", "signalled"):
        assert histories[name].job.status is JobStatus.COMPLETED
        assert only(name, *timer) == [EventType.TIMER_STARTED, EventType.TIMER_FIRED]
    assert only("compensated", EventType.COMPENSATION_COMMITTED, EventType.JOB_FAILED) == [
        EventType.COMPENSATION_COMMITTED,
        EventType.JOB_FAILED,
    ]


# -- a changed copy of the agent ------------------------------------------------------------------


def audit_decision(sctx: StepContext, order: Order) -> int:
    key = sctx.idempotency_key("audit.log")
    # Counted in the registry, were it ever called.
    return sctx.tool("audit.log", registry.calls.record, "audit.log", f"{key}:{order.order_id}")


def agent_with_inserted_step() -> App:
    """``support.refund`` v"1" as a careless edit would leave it: one step inserted after ``decide``."""
    changed = App("support")

    @changed.job("support.refund", version="1")
    def support_refund(ctx: JobContext, req: RefundRequest) -> RefundResult:
        plan = ctx.step(support.plan_ticket, req, name="plan", retry=support.TRANSIENT)
        order = ctx.step(support.lookup_order, req.order_id, retry=support.TRANSIENT)
        verdict = ctx.step(support.check_policy, order, req.customer_id)
        decision = ctx.step(support.decide, plan, order, verdict, retry=support.TRANSIENT)
        ctx.step(audit_decision, order)  # the change
        review = support.Review(decision, "refunded" if decision.approved else "denied", None)
        if decision.approved and decision.amount_cents > req.approval_threshold_cents:
            review = support.await_review(ctx, order, decision)
        decision = review.decision
        refund = (
            ctx.step(support.issue_refund, order, decision, compensate=support.reverse_refund)
            if decision.approved
            else None
        )
        reply_text = ctx.step(support.reply, req, order, decision, refund, retry=support.TRANSIENT)
        ctx.sleep(support.FOLLOW_UP_AFTER)
        survey_sent = ctx.step(support.follow_up, req, order, retry=support.TRANSIENT)
        return RefundResult(
            status=review.status,
            refund_id=refund.refund_id if refund is not None else None,
            reply=reply_text,
            reviewed_by=review.by,
            survey_sent=survey_sent,
        )

    return changed
