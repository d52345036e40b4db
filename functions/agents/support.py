"""The support agent: job ``support.refund`` reads a refund ticket and resolves it end to end.

Six durable steps, one per worker invocation: ``plan`` (the model reads the ticket), ``lookup_order``
(CRM), ``check_policy`` (refund rules), ``decide`` (the model weighs order and verdict),
``issue_refund`` (only when approved; ``AT_MOST_ONCE``, with the ledger's idempotency key passed to
the payments API) and ``reply`` (mail, ``AT_LEAST_ONCE`` under a key the mail service deduplicates).
Every call to the outside world is a ``sctx.tool`` call, so a crash or a retry never repeats a
recorded effect. The model's decision is bounded by code: no refund without an eligible policy
verdict, never more than the verdict allows. The worker Lambda hosts ``app``
(``AETHERIS_APP: agents.support:app``).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from aetheris import App, EffectSemantics, JobContext, RetryPolicy, StepContext

from .model import Decision, Model, Plan, current_model
from .tools import MailReceipt, Order, PolicyVerdict, Refund, registry

app = App("support")

# Network and model calls fail transiently: retry with backoff. The fake clock skips the waits.
TRANSIENT = RetryPolicy(
    max_attempts=4, initial_interval=timedelta(seconds=1), max_interval=timedelta(seconds=20)
)


class RefundRequest(BaseModel):
    model_config = ConfigDict(frozen=True)

    ticket_id: str
    customer_id: str
    order_id: str
    message: str


class RefundResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: Literal["refunded", "denied"]
    refund_id: str | None
    reply: str


@app.job("support.refund", version="1")
def support_refund(ctx: JobContext, req: RefundRequest) -> RefundResult:
    plan = ctx.step(plan_ticket, req, name="plan", retry=TRANSIENT)
    order = ctx.step(lookup_order, req.order_id, retry=TRANSIENT)
    verdict = ctx.step(check_policy, order, req.customer_id)
    decision = ctx.step(decide, plan, order, verdict, retry=TRANSIENT)
    refund = ctx.step(issue_refund, order, decision) if decision.approved else None
    reply_text = ctx.step(reply, req, order, decision, refund, retry=TRANSIENT)
    return RefundResult(
        status="refunded" if refund is not None else "denied",
        refund_id=refund.refund_id if refund is not None else None,
        reply=reply_text,
    )


# -- steps ----------------------------------------------------------------------------------------


def plan_ticket(sctx: StepContext, req: RefundRequest) -> Plan:
    key = sctx.idempotency_key("llm.plan")
    return sctx.tool("llm.plan", _ask_plan, current_model(), req, key)


def lookup_order(sctx: StepContext, order_id: str) -> Order:
    key = sctx.idempotency_key("crm.get_order")
    return sctx.tool("crm.get_order", _get_order, order_id, key)


def check_policy(sctx: StepContext, order: Order, customer_id: str) -> PolicyVerdict:
    key = sctx.idempotency_key("policy.check_refund")
    return sctx.tool("policy.check_refund", _check_refund, order, customer_id, key)


def decide(sctx: StepContext, plan: Plan, order: Order, verdict: PolicyVerdict) -> Decision:
    key = sctx.idempotency_key("llm.decide")
    proposed = sctx.tool("llm.decide", _ask_decision, current_model(), plan, order, verdict, key)
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


def _ask_plan(model: Model, req: RefundRequest, key: str) -> Plan:
    registry.calls.record("llm.plan", key)
    return model.plan(req.message, req.order_id)


def _ask_decision(model: Model, plan: Plan, order: Order, verdict: PolicyVerdict, key: str) -> Decision:
    registry.calls.record("llm.decide", key)
    return model.decide(plan, order, verdict)


def _get_order(order_id: str, key: str) -> Order:
    return registry.crm.get_order(order_id, idempotency_key=key)


def _check_refund(order: Order, customer_id: str, key: str) -> PolicyVerdict:
    return registry.policy.check_refund(order, customer_id, idempotency_key=key)


def _refund(order_id: str, amount_cents: int, key: str) -> Refund:
    return registry.payments.refund(order_id, amount_cents, idempotency_key=key)


def _send_mail(to: str, subject: str, body: str, key: str) -> MailReceipt:
    return registry.mail.send(to, subject, body, idempotency_key=key)
