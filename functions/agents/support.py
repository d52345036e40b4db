"""The support agent: job ``support.refund`` reads a refund ticket and resolves it end to end.

Durable steps, one per worker invocation: ``plan`` (the model reads the ticket), ``lookup_order``
(CRM), ``check_policy`` (refund rules), ``decide`` (the model weighs order and verdict),
``issue_refund`` (only when approved; ``AT_MOST_ONCE``, with the ledger's idempotency key passed to
the payments API), ``reply`` (mail, ``AT_LEAST_ONCE`` under a key the mail service deduplicates)
and, three days later on a durable timer, ``follow_up`` (a satisfaction survey by mail).

A refund over the request's ``approval_threshold_cents`` waits for a human: the job parks on signal
``approval`` (payload ``{"approved": bool, "by": str}``) for at most ``APPROVAL_TIMEOUT``. A
rejection, a malformed payload or no answer in time means no refund, and the reply says which.

``issue_refund`` is a saga step: if a later step fails terminally (the reply's address bounces for
good, say), the runtime runs ``reverse_refund`` — a durable step of its own — and the job ends
``FAILED``. The survey is best effort: its failure is caught, so it never reverses a refund the
customer was already told of. A cancellation during the follow-up timer still does (the saga has no
point after which it stops compensating).

Every call to the outside world is a ``sctx.tool`` call, so a crash or a retry never repeats a
recorded effect. The model's decision is bounded by code: no refund without an eligible policy
verdict, never more than the verdict allows. The worker Lambda hosts ``app``
(``AETHERIS_APP: agents.support:app``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from aetheris import App, EffectSemantics, JobContext, RetryPolicy, StepContext, WaitTimeout

from .model import Decision, Plan, current_model
from .tools import MailReceipt, MailRejected, Order, PolicyVerdict, Refund, Reversal, registry

app = App("support")

# Network and model calls fail transiently: retry with backoff. The fake clock skips the waits.
TRANSIENT = RetryPolicy(
    max_attempts=4, initial_interval=timedelta(seconds=1), max_interval=timedelta(seconds=20)
)
APPROVAL_SIGNAL = "approval"
APPROVAL_THRESHOLD_CENTS = 10_000  # refunds above $100 wait for a human
APPROVAL_TIMEOUT = timedelta(days=2)
FOLLOW_UP_AFTER = timedelta(days=3)


class RefundRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    ticket_id: str
    customer_id: str
    order_id: str
    message: str
    approval_threshold_cents: int = Field(default=APPROVAL_THRESHOLD_CENTS, ge=0)
    # When the satisfaction survey goes out after the reply. Shorter only where nobody can wait
    # days for the job to finish: the end-to-end tests against a deployed stack.
    follow_up_after_seconds: int = Field(default=int(FOLLOW_UP_AFTER.total_seconds()), ge=1)


class Approval(BaseModel):
    """The payload of signal ``approval``: a human's verdict on a refund over the threshold."""

    model_config = ConfigDict(frozen=True)

    approved: StrictBool
    by: str = Field(min_length=1)


class RefundResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["refunded", "denied", "rejected", "expired"]
    refund_id: str | None
    reply: str
    reviewed_by: str | None = None  # who approved or rejected, when a human was asked
    survey_sent: bool = False


@dataclass(frozen=True)
class Review:
    """The decision to carry out, the outcome it leads to, and who reviewed it (if a human did)."""

    decision: Decision
    status: Literal["refunded", "denied", "rejected", "expired"]
    by: str | None


@app.job("support.refund", version="1")
def support_refund(ctx: JobContext, req: RefundRequest) -> RefundResult:
    plan = ctx.step(plan_ticket, req, name="plan", retry=TRANSIENT)
    order = ctx.step(lookup_order, req.order_id, retry=TRANSIENT)
    verdict = ctx.step(check_policy, order, req.customer_id)
    decision = ctx.step(decide, plan, order, verdict, retry=TRANSIENT)
    review = Review(decision, "refunded" if decision.approved else "denied", None)
    if decision.approved and decision.amount_cents > req.approval_threshold_cents:
        review = await_review(ctx, order, decision)
    decision = review.decision
    refund = ctx.step(issue_refund, order, decision, compensate=reverse_refund) if decision.approved else None
    reply_text = ctx.step(reply, req, order, decision, refund, retry=TRANSIENT)
    ctx.sleep(timedelta(seconds=req.follow_up_after_seconds))
    try:
        survey_sent = ctx.step(follow_up, req, order, retry=TRANSIENT)
    except (MailRejected, ConnectionError):
        # The customer already has the outcome: a survey that cannot go out must not fail the job,
        # which would reverse the refund.
        survey_sent = False
    return RefundResult(
        status=review.status,
        refund_id=refund.refund_id if refund is not None else None,
        reply=reply_text,
        reviewed_by=review.by,
        survey_sent=survey_sent,
    )


def await_review(ctx: JobContext, order: Order, decision: Decision) -> Review:
    """Park until a human approves or rejects ``decision``; no answer in time is no refund."""
    try:
        payload: Any = ctx.wait_for_signal(APPROVAL_SIGNAL, timeout=APPROVAL_TIMEOUT)
    except WaitTimeout:
        return Review(
            Decision(
                decision="deny",
                reason=f"no approval within {APPROVAL_TIMEOUT.days} days",
                amount_cents=0,
                customer_message=(
                    f"Your refund for your {order.item} needs a review we could not complete in time, "
                    "so no refund has been issued. A colleague will contact you."
                ),
            ),
            "expired",
            None,
        )
    try:
        approval = Approval.model_validate(payload)
    except ValidationError:
        # No money moves on an answer that does not plainly say yes.
        approval = Approval(approved=False, by="(malformed approval)")
    if approval.approved:
        return Review(
            decision.model_copy(update={"reason": f"{decision.reason}; approved by {approval.by}"}),
            "refunded",
            approval.by,
        )
    return Review(
        Decision(
            decision="deny",
            reason=f"refund of {decision.amount_cents} cents rejected by {approval.by}",
            amount_cents=0,
            customer_message=f"We are sorry: after review, we cannot refund your {order.item}.",
        ),
        "rejected",
        approval.by,
    )


# -- steps ----------------------------------------------------------------------------------------


def plan_ticket(sctx: StepContext, req: RefundRequest) -> Plan:
    # A recorded model call (aetheris.llm): its tokens and cost are in the ledger with its answer.
    return current_model().plan(sctx, req.message, req.order_id)


def lookup_order(sctx: StepContext, order_id: str) -> Order:
    key = sctx.idempotency_key("crm.get_order")
    return sctx.tool("crm.get_order", _get_order, order_id, key)


def check_policy(sctx: StepContext, order: Order, customer_id: str) -> PolicyVerdict:
    key = sctx.idempotency_key("policy.check_refund")
    return sctx.tool("policy.check_refund", _check_refund, order, customer_id, key)


def decide(sctx: StepContext, plan: Plan, order: Order, verdict: PolicyVerdict) -> Decision:
    proposed = current_model().decide(sctx, plan, order, verdict)
    return bounded(proposed, verdict)


def issue_refund(sctx: StepContext, order: Order, decision: Decision) -> Refund:
    # Money moves at most once: a crash between the call and its record fails the step visibly
    # (EffectOutcomeUnknown) rather than risk a second refund; the key lets payments refuse one too.
    key = sctx.idempotency_key("payments.refund")
    return sctx.tool(
        "payments.refund",
        _refund,
        order.order_id,
        decision.amount_cents,
        key,
        semantics=EffectSemantics.AT_MOST_ONCE,
    )


def reverse_refund(sctx: StepContext, order: Order, decision: Decision) -> Reversal:
    # The saga's undo of issue_refund. It gets that step's arguments, not its result, so it names the
    # order rather than the refund. Reversing is idempotent by key at the payments service, so
    # AT_LEAST_ONCE is safe: a crash mid-call repeats it under the same key.
    key = sctx.idempotency_key("payments.reverse")
    return sctx.tool("payments.reverse", _reverse, order.order_id, key)


def reply(
    sctx: StepContext, req: RefundRequest, order: Order, decision: Decision, refund: Refund | None
) -> str:
    body = decision.customer_message
    if refund is not None:
        body += f" Refund reference: {refund.refund_id}."
    subject = f"Re: your request {req.ticket_id} about order {order.order_id}"
    key = sctx.idempotency_key("mail.send")
    sctx.tool("mail.send", _send_mail, order.customer_email, subject, body, key)
    return body


def follow_up(sctx: StepContext, req: RefundRequest, order: Order) -> bool:
    subject = f"How did we do with your request {req.ticket_id}?"
    body = f"A few days ago we answered your request about your {order.item}. How did we do? (1-5)"
    key = sctx.idempotency_key("mail.send")
    sctx.tool("mail.send", _send_mail, order.customer_email, subject, body, key)
    return True


def bounded(proposed: Decision, verdict: PolicyVerdict) -> Decision:
    """The model proposes, the policy disposes: no approval without eligibility, no more than allowed."""
    if not proposed.approved:
        return proposed
    if not verdict.eligible:
        return Decision(
            decision="deny",
            reason=f"overridden: policy rule {verdict.rule} forbids a refund",
            amount_cents=0,
            customer_message=f"We are sorry, but we cannot refund this order. {verdict.explanation}",
        )
    return proposed.model_copy(update={"amount_cents": min(proposed.amount_cents, verdict.max_refund_cents)})


# -- tool bodies: the only code that reaches the model or the services ----------------------------


def _get_order(order_id: str, key: str) -> Order:
    return registry.crm.get_order(order_id, idempotency_key=key)


def _check_refund(order: Order, customer_id: str, key: str) -> PolicyVerdict:
    return registry.policy.check_refund(order, customer_id, idempotency_key=key)


def _refund(order_id: str, amount_cents: int, key: str) -> Refund:
    return registry.payments.refund(order_id, amount_cents, idempotency_key=key)


def _reverse(order_id: str, key: str) -> Reversal:
    return registry.payments.reverse(order_id, idempotency_key=key)


def _send_mail(to: str, subject: str, body: str, key: str) -> MailReceipt:
    return registry.mail.send(to, subject, body, idempotency_key=key)
