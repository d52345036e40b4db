"""The support agent (job ``support.refund``) on the embedded stack: its decisions, the human approval
(signal, rejection, timeout), the saga that reverses a refund, the follow-up timer, its behaviour under
worker crashes and network errors (counted at the fake services), the Bedrock model's Converse
requests and answers (stubbed, no network), and the demo."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from aetheris import Event, EventType, JobStatus, JobView
from aetheris.budget import spend_of
from aetheris.testing import LocalRuntime
from aetheris_infra import demo
from aetheris_infra.demo import settle
from agents import support
from agents.model import (
    SCRIPTED_MODEL_ID,
    ConverseModel,
    Decision,
    ModelAnswerInvalid,
    Plan,
    ScriptedRules,
    current_model,
    parse_answer,
    reset_model,
    use_model,
)
from agents.tools import PolicyVerdict, registry

BROKEN_HEADPHONES = {  # $129.00: over the approval threshold
    "ticket_id": "T-1",
    "customer_id": "cus-42",
    "order_id": "ord-1001",
    "message": "My headphones arrived broken. I would like a refund.",
}
FINAL_SALE_LAMP = {
    "ticket_id": "T-2",
    "customer_id": "cus-42",
    "order_id": "ord-1002",
    "message": "The lamp is not what I expected, I changed my mind. Refund please.",
}
DAMAGED_CABLE = {  # $19.00: under the threshold, refunded without a human
    "ticket_id": "T-3",
    "customer_id": "cus-7",
    "order_id": "ord-1004",
    "message": "The charging cable arrived damaged, please refund it.",
}
APPROVE = {"approved": True, "by": "dana"}
REJECT = {"approved": False, "by": "sam"}
STEPS_WHEN_REFUNDED = ["plan", "lookup_order", "check_policy", "decide", "issue_refund", "reply", "follow_up"]
STEPS_WITHOUT_REFUND = ["plan", "lookup_order", "check_policy", "decide", "reply", "follow_up"]
SURVEY = "How did we do"


@pytest.fixture(autouse=True)
def fresh_services() -> Iterator[None]:
    registry.reset()
    reset_model()
    yield
    registry.reset()
    reset_model()


@dataclass
class Outcome:
    view: JobView
    parked: list[JobStatus]  # the job's status each time it went idle, before it finished
    events: list[Event]
    crashes: list[str]

    @property
    def steps(self) -> list[str]:
        return [e.name or "" for e in self.events if e.type is EventType.STEP_COMMITTED]

    @property
    def failed_steps(self) -> list[str]:
        return [e.name or "" for e in self.events if e.type is EventType.STEP_FAILED]

    @property
    def result(self) -> dict[str, Any]:
        assert isinstance(self.view.result, dict), self.view
        return self.view.result


def drive(local: LocalRuntime, job_id: str, approval: Any = APPROVE) -> tuple[JobView, list[JobStatus]]:
    """Run the job to its end as the world would: approve (or send ``approval``) when it waits, let the
    follow-up timer's 3 days pass when it sleeps."""
    parked: list[JobStatus] = []
    view = settle(local, job_id)
    while not view.status.is_terminal and len(parked) < 4:
        parked.append(view.status)
        if view.status is JobStatus.WAITING:
            local.signal(job_id, support.APPROVAL_SIGNAL, approval)
        elif view.status is JobStatus.SLEEPING:
            local.advance(support.FOLLOW_UP_AFTER)
        view = settle(local, job_id)
    return view, parked


def run_ticket(
    ticket: dict[str, Any],
    prepare: Callable[[LocalRuntime], None] | None = None,
    approval: Any = APPROVE,
) -> Outcome:
    with LocalRuntime(support.app, workers=2) as local:
        if prepare is not None:
            prepare(local)
        job_id = local.start("support.refund", ticket)
        view, parked = drive(local, job_id, approval)
        events = local.events(job_id)
    return Outcome(view=view, parked=parked, events=events, crashes=[c.point for c in local.crashes])


def crash_during(service: str, point: str) -> Callable[[LocalRuntime], None]:
    """Arm ``point`` the moment ``service`` is first called: the crash hits that tool's step."""

    def prepare(local: LocalRuntime) -> None:
        armed: list[str] = []

        def arm(called: str, key: str, nth: int) -> None:
            if called == service and not armed:
                armed.append(key)
                local.crash_at(point)  # type: ignore[arg-type]

        registry.calls.observers.append(arm)

    return prepare


def surveys() -> list[str]:
    return [body for _, subject, body in registry.mail.outbox.values() if subject.startswith(SURVEY)]


def replies() -> list[str]:
    return [body for _, subject, body in registry.mail.outbox.values() if not subject.startswith(SURVEY)]


# -- decisions ------------------------------------------------------------------------------------


def test_support_refund_under_threshold_refunds_without_waiting_and_replies() -> None:
    outcome = run_ticket(DAMAGED_CABLE)

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.parked == [JobStatus.SLEEPING], "no approval asked for"
    assert outcome.result["status"] == "refunded" and outcome.result["reviewed_by"] is None
    assert outcome.steps == STEPS_WHEN_REFUNDED
    (refund,) = registry.payments.refunds.values()
    assert refund.amount_cents == 1_900
    assert replies() == [outcome.result["reply"]] and "re_0001" in outcome.result["reply"]


def test_support_refund_final_sale_ticket_is_denied_without_payment_or_approval() -> None:
    outcome = run_ticket(FINAL_SALE_LAMP)

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.result["status"] == "denied" and outcome.result["refund_id"] is None
    assert outcome.steps == STEPS_WITHOUT_REFUND
    assert JobStatus.WAITING not in outcome.parked
    assert registry.calls.count("payments.refund") == 0 and not registry.payments.refunds
    assert "final-sale" in outcome.result["reply"]
    assert replies() == [outcome.result["reply"]]


def test_support_refund_ticket_of_another_customer_is_denied() -> None:
    outcome = run_ticket({**BROKEN_HEADPHONES, "customer_id": "cus-7"})

    assert outcome.result["status"] == "denied"
    assert registry.calls.count("payments.refund") == 0


def test_support_refund_unknown_order_fails_without_retry_or_refund() -> None:
    outcome = run_ticket({**BROKEN_HEADPHONES, "order_id": "ord-404"})

    assert outcome.view.status is JobStatus.FAILED
    assert outcome.view.error is not None and outcome.view.error.type == "agents.tools.UnknownOrder"
    assert outcome.failed_steps == ["lookup_order"]
    assert registry.calls.count("crm.get_order") == 1 and registry.calls.count("payments.refund") == 0


def test_support_refund_replay_of_its_log_is_consistent_and_calls_no_service() -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        drive(local, job_id)
        calls_before = registry.calls.by_service()
        report = local.replay(job_id)

    assert report.consistent and report.reached_end and report.output_matches
    assert report.operations == len(STEPS_WHEN_REFUNDED) + 3  # the wait, the sleep, the end
    assert registry.calls.by_service() == calls_before


def test_scripted_model_question_without_refund_plans_no_refund() -> None:
    plan = ScriptedRules().plan("Where is my parcel? It never arrived.", "ord-1003")

    assert plan.intent == "other" and plan.reason == "late"
    assert "payments.refund" not in plan.actions


def test_bounded_model_approval_against_ineligible_verdict_is_denied() -> None:
    approve = Decision(
        decision="approve", reason="model says yes", amount_cents=500, customer_message="Done."
    )
    ineligible = PolicyVerdict(
        eligible=False, rule="final_sale", max_refund_cents=0, explanation="Final sale."
    )

    decision = support.bounded(approve, ineligible)

    assert decision.decision == "deny" and decision.amount_cents == 0


def test_bounded_model_approval_over_the_verdict_is_capped() -> None:
    greedy = Decision(decision="approve", reason="r", amount_cents=99_999, customer_message="Done.")
    eligible = PolicyVerdict(eligible=True, rule="standard_return", max_refund_cents=1_000, explanation="ok")

    assert support.bounded(greedy, eligible).amount_cents == 1_000


# -- human approval -------------------------------------------------------------------------------


def test_support_refund_over_threshold_waits_for_approval_and_refunds_once_approved() -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        waiting = settle(local, job_id)
        refunds_while_waiting = registry.calls.count("payments.refund")
        local.signal(job_id, support.APPROVAL_SIGNAL, APPROVE)
        view, _ = drive(local, job_id)
        events = local.events(job_id)

    assert waiting.status is JobStatus.WAITING and waiting.waiting_for == "approval"
    assert refunds_while_waiting == 0
    assert view.status is JobStatus.COMPLETED
    assert view.result["status"] == "refunded" and view.result["reviewed_by"] == "dana"
    assert [e.type for e in events].count(EventType.SIGNAL_CONSUMED) == 1
    (refund,) = registry.payments.refunds.values()
    assert refund.amount_cents == 12_900 and registry.calls.count("payments.refund") == 1


def test_support_refund_threshold_on_the_request_decides_whether_to_wait() -> None:
    outcome = run_ticket({**BROKEN_HEADPHONES, "approval_threshold_cents": 20_000})

    assert outcome.parked == [JobStatus.SLEEPING]
    assert outcome.result["status"] == "refunded" and outcome.result["reviewed_by"] is None


def test_support_refund_rejected_approval_issues_no_refund_and_says_so() -> None:
    outcome = run_ticket(BROKEN_HEADPHONES, approval=REJECT)

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.result["status"] == "rejected" and outcome.result["refund_id"] is None
    assert outcome.result["reviewed_by"] == "sam"
    assert outcome.steps == STEPS_WITHOUT_REFUND
    assert registry.calls.count("payments.refund") == 0
    assert replies() == [outcome.result["reply"]] and "cannot refund" in outcome.result["reply"]


@pytest.mark.parametrize("payload", [{"approved": "yes", "by": "dana"}, {"approved": True}, "ok", None])
def test_support_refund_malformed_approval_is_a_rejection(payload: Any) -> None:
    outcome = run_ticket(BROKEN_HEADPHONES, approval=payload)

    assert outcome.result["status"] == "rejected"
    assert registry.calls.count("payments.refund") == 0


def test_support_refund_approval_timeout_issues_no_refund_and_says_so() -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        settle(local, job_id)
        local.advance(support.APPROVAL_TIMEOUT - timedelta(minutes=1))
        still_waiting = settle(local, job_id)
        local.advance(timedelta(minutes=1))
        view, _ = drive(local, job_id)
        events = local.events(job_id)

    assert still_waiting.status is JobStatus.WAITING
    assert EventType.WAIT_TIMED_OUT in [e.type for e in events]
    assert view.status is JobStatus.COMPLETED
    assert view.result["status"] == "expired" and view.result["refund_id"] is None
    assert registry.calls.count("payments.refund") == 0
    assert replies() == [view.result["reply"]] and "no refund has been issued" in view.result["reply"]


def test_support_refund_approval_sent_before_the_wait_is_consumed_by_it() -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        local.signal(job_id, support.APPROVAL_SIGNAL, APPROVE)
        view, parked = drive(local, job_id, approval=REJECT)  # a second answer would be a rejection
        types = [e.type for e in local.events(job_id)]

    assert parked == [JobStatus.SLEEPING], "it never waited"
    assert EventType.WAIT_STARTED not in types and types.count(EventType.SIGNAL_CONSUMED) == 1
    assert view.result["status"] == "refunded" and registry.calls.count("payments.refund") == 1


def test_support_refund_crash_while_ingesting_the_approval_still_refunds_once() -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        settle(local, job_id)
        local.crash_at("after_inbox_write")
        local.signal(job_id, support.APPROVAL_SIGNAL, APPROVE)
        view, _ = drive(local, job_id)
        types = [e.type for e in local.events(job_id)]

    assert [c.point for c in local.crashes] == ["after_inbox_write"]
    assert view.result["status"] == "refunded" and types.count(EventType.SIGNAL_CONSUMED) == 1
    assert registry.calls.count("payments.refund") == 1


def test_support_refund_cancelled_while_waiting_issues_no_refund() -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        settle(local, job_id)
        local.cancel(job_id)
        view = settle(local, job_id)

    assert view.status is JobStatus.CANCELLED
    assert registry.calls.count("payments.refund") == 0 and registry.calls.count("mail.send") == 0


# -- saga: reversing the refund -------------------------------------------------------------------


def test_support_refund_reply_bounced_after_refund_reverses_it_and_fails() -> None:
    outcome = run_ticket(BROKEN_HEADPHONES, lambda _: registry.mail.reject("ada@example.com"))

    assert outcome.view.status is JobStatus.FAILED
    assert outcome.view.error is not None and outcome.view.error.type == "agents.tools.MailRejected"
    assert outcome.failed_steps == ["reply"], "a hard bounce is not retried"
    compensated = [e.name for e in outcome.events if e.type is EventType.COMPENSATION_COMMITTED]
    assert compensated == ["undo-issue_refund"]
    (reversal,) = registry.payments.reversals.values()
    assert reversal.refund_ids == ("re_0001",) and reversal.amount_cents == 12_900
    assert registry.payments.outstanding_cents("ord-1001") == 0
    assert registry.calls.count("payments.reverse") == 1 and not surveys()


def test_support_refund_crash_mid_compensation_reverses_exactly_once() -> None:
    def bounce_then_crash_in_compensation(local: LocalRuntime) -> None:
        registry.mail.reject("ada@example.com")

        def arm(service: str, key: str, nth: int) -> None:
            if service == "mail.send":  # this send bounces; the next recorded effect is the reversal
                local.crash_at("after_record")

        registry.calls.observers.append(arm)

    outcome = run_ticket(BROKEN_HEADPHONES, bounce_then_crash_in_compensation)

    assert outcome.crashes == ["after_record"]
    assert outcome.view.status is JobStatus.FAILED
    reclaimed = [e for e in outcome.events if e.type is EventType.COMPENSATION_COMMITTED]
    assert len(reclaimed) == 1 and reclaimed[0].reclaimed_from is not None, "another worker finished it"
    assert registry.calls.count("payments.reverse") == 1 and len(registry.payments.reversals) == 1
    assert registry.payments.outstanding_cents("ord-1001") == 0


def test_support_refund_denied_ticket_bounced_reply_fails_with_nothing_to_reverse() -> None:
    outcome = run_ticket(FINAL_SALE_LAMP, lambda _: registry.mail.reject("ada@example.com"))

    assert outcome.view.status is JobStatus.FAILED
    assert not [e for e in outcome.events if e.type is EventType.COMPENSATION_COMMITTED]
    assert registry.calls.count("payments.reverse") == 0


# -- follow-up timer ------------------------------------------------------------------------------


def test_support_refund_follow_up_survey_is_sent_once_after_three_days_not_before() -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", DAMAGED_CABLE)
        replied = settle(local, job_id)
        surveys_at_reply = len(surveys())
        local.advance(support.FOLLOW_UP_AFTER - timedelta(minutes=1))
        almost = settle(local, job_id)
        surveys_before_due = len(surveys())
        local.advance(timedelta(minutes=1))
        view = settle(local, job_id)
        events = local.events(job_id)

    assert replied.status is JobStatus.SLEEPING and almost.status is JobStatus.SLEEPING
    assert surveys_at_reply == surveys_before_due == 0
    assert view.status is JobStatus.COMPLETED and view.result["survey_sent"] is True
    assert len(surveys()) == 1 and registry.calls.count("mail.send") == 2
    (started,) = [e for e in events if e.type is EventType.TIMER_STARTED]
    (fired,) = [e for e in events if e.type is EventType.TIMER_FIRED]
    assert fired.at - started.at >= support.FOLLOW_UP_AFTER


def bounce(address: str) -> None:
    registry.mail.reject(address)


def mail_down(_: str) -> None:
    registry.mail.fail_next = support.TRANSIENT.max_attempts  # every attempt of the step


@pytest.mark.parametrize("fault", [bounce, mail_down], ids=["bounced", "mail_down"])
def test_support_refund_undeliverable_survey_keeps_the_refund(fault: Callable[[str], None]) -> None:
    with LocalRuntime(support.app, workers=2) as local:
        job_id = local.start("support.refund", DAMAGED_CABLE)
        settle(local, job_id)
        fault("grace@example.com")  # while the job sleeps
        local.advance(support.FOLLOW_UP_AFTER)
        view = settle(local, job_id)
        failed = [e.name for e in local.events(job_id) if e.type is EventType.STEP_FAILED]

    assert view.status is JobStatus.COMPLETED
    assert view.result["status"] == "refunded" and view.result["survey_sent"] is False
    assert set(failed) == {"follow_up"} and len(failed) == (1 if fault is bounce else 4)
    assert not registry.payments.reversals and registry.payments.outstanding_cents("ord-1004") == 1_900


# -- faults ---------------------------------------------------------------------------------------

AT_LEAST_ONCE_TOOLS = ["llm.plan", "crm.get_order", "policy.check_refund", "llm.decide", "mail.send"]


@pytest.mark.parametrize(
    ("point", "service"),
    [("after_effect", tool) for tool in AT_LEAST_ONCE_TOOLS]
    + [("before_commit", tool) for tool in [*AT_LEAST_ONCE_TOOLS, "payments.refund"]],
)
def test_support_refund_crash_during_tool_completes_with_one_refund(point: str, service: str) -> None:
    outcome = run_ticket(BROKEN_HEADPHONES, crash_during(service, point))

    assert outcome.crashes == [point]
    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.result["refund_id"] == "re_0001"
    assert outcome.steps == STEPS_WHEN_REFUNDED
    assert registry.calls.count("payments.refund") == 1 and len(registry.payments.refunds) == 1
    # Only the window between a call and its record makes a service see its key twice.
    first_key, *other_keys = registry.calls.by_service()[service].items()
    assert first_key[1] == (2 if point == "after_effect" else 1)
    assert all(n == 1 for _, n in other_keys)
    assert len(replies()) == 1 and len(surveys()) == 1


@pytest.mark.parametrize("point", ["after_effect", "before_commit"])
def test_support_refund_crash_armed_at_start_completes_with_one_refund(point: str) -> None:
    outcome = run_ticket(BROKEN_HEADPHONES, lambda local: local.crash_at(point))  # type: ignore[arg-type]

    assert outcome.crashes == [point]
    assert outcome.view.status is JobStatus.COMPLETED
    assert registry.calls.count("payments.refund") == 1


def test_support_refund_crash_after_refund_call_fails_visibly_without_second_refund() -> None:
    outcome = run_ticket(BROKEN_HEADPHONES, crash_during("payments.refund", "after_effect"))

    assert outcome.view.status is JobStatus.FAILED
    assert outcome.view.error is not None
    assert outcome.view.error.type == "aetheris.errors.EffectOutcomeUnknown"
    assert registry.calls.count("payments.refund") == 1
    assert registry.calls.count("mail.send") == 0
    assert registry.calls.count("payments.reverse") == 0, "an unrecorded refund has no compensation"


def test_support_refund_crm_connection_error_is_retried_with_the_same_key() -> None:
    def flaky_crm(_: LocalRuntime) -> None:
        registry.crm.fail_next = 1

    outcome = run_ticket(BROKEN_HEADPHONES, flaky_crm)

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.failed_steps == ["lookup_order"]
    (calls,) = registry.calls.by_service()["crm.get_order"].values()
    assert calls == 2


# -- Bedrock --------------------------------------------------------------------------------------


def converse_response(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 321, "outputTokens": 45, "totalTokens": 366},
        "metrics": {"latencyMs": 412},
    }


@pytest.fixture
def bedrock() -> Iterator[tuple[Any, Stubber, list[dict[str, Any]]]]:
    client = boto3.client("bedrock-runtime", region_name="us-east-1")
    sent: list[dict[str, Any]] = []
    client.meta.events.register(
        "before-parameter-build.bedrock-runtime.Converse", lambda params, **_: sent.append(params)
    )
    with Stubber(client) as stubber:
        yield client, stubber, sent
        stubber.assert_no_pending_responses()


CONVERSE_REQUEST = {
    "modelId": "anthropic.test-model-v1:0",
    "system": [{"text": ANY}],
    "messages": [{"role": "user", "content": [{"text": ANY}]}],
    "inferenceConfig": {"maxTokens": 1024, "temperature": 0.0},
}
PLAN_ANSWER = {
    "intent": "refund",
    "reason": "damaged",
    "summary": "Headphones arrived broken; customer wants a refund.",
    "actions": ["crm.get_order", "policy.check_refund", "llm.decide", "payments.refund", "mail.send"],
}


DECIDE_ANSWER = {
    "decision": "approve",
    "reason": "ok",
    "amount_cents": 12900,
    "customer_message": "Refunded.",
}


def test_support_refund_with_bedrock_model_sends_converse_requests_and_completes(bedrock: Any) -> None:
    client, stubber, sent = bedrock
    fenced = f"Here is the plan:\n```json\n{json.dumps(PLAN_ANSWER)}\n```"
    stubber.add_response("converse", converse_response(fenced), CONVERSE_REQUEST)
    stubber.add_response("converse", converse_response(json.dumps(DECIDE_ANSWER)), CONVERSE_REQUEST)
    use_model(ConverseModel(client, "anthropic.test-model-v1:0"))

    outcome = run_ticket({**BROKEN_HEADPHONES, "message": "The charging cable arrived damaged, refund it."})

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.view.result["reply"] == "Refunded. Refund reference: re_0001."
    plan_request, decide_request = sent
    prompt = plan_request["messages"][0]["content"][0]["text"]
    assert "charging cable arrived damaged" in prompt and "ord-1001" in prompt
    system = plan_request["system"][0]["text"]
    assert "JSON" in system and '"intent"' in system and "{schema}" not in system
    decided = decide_request["messages"][0]["content"][0]["text"]
    assert '"max_refund_cents":12900' in decided and '"order_id":"ord-1001"' in decided


def test_support_refund_model_usage_and_cost_are_recorded_per_call(bedrock: Any) -> None:
    client, stubber, _ = bedrock
    stubber.add_response("converse", converse_response(json.dumps(PLAN_ANSWER)), CONVERSE_REQUEST)
    stubber.add_response("converse", converse_response(json.dumps(DECIDE_ANSWER)), CONVERSE_REQUEST)
    use_model(ConverseModel(client, "anthropic.test-model-v1:0"))

    with LocalRuntime(support.app) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        drive(local, job_id)
        spend = spend_of(local.runtimes[0].effects(job_id))

    assert spend.calls == 2 and spend.tokens == 2 * 366
    assert spend.by_model["anthropic.test-model-v1:0"].input_tokens == 2 * 321
    assert spend.unpriced_calls == 2  # a test model id is not in the price table: tokens, no cost


def test_support_refund_malformed_model_answer_is_asked_again_and_not_recorded(bedrock: Any) -> None:
    client, stubber, sent = bedrock
    stubber.add_response("converse", converse_response("I cannot help with that."), CONVERSE_REQUEST)
    stubber.add_response("converse", converse_response(json.dumps(PLAN_ANSWER)), CONVERSE_REQUEST)
    stubber.add_response("converse", converse_response(json.dumps(DECIDE_ANSWER)), CONVERSE_REQUEST)
    use_model(ConverseModel(client, "anthropic.test-model-v1:0"))

    with LocalRuntime(support.app) as local:
        job_id = local.start("support.refund", BROKEN_HEADPHONES)
        view, _ = drive(local, job_id)
        recorded = [e for e in local.runtimes[0].effects(job_id) if e.get("effect") == "llm.plan"]

    assert view.status is JobStatus.COMPLETED and len(sent) == 3
    assert [
        json.loads(e["result"])["response"]["output"]["message"]["content"][0]["text"] for e in recorded
    ] == [json.dumps(PLAN_ANSWER)]


def test_parse_answer_without_json_raises_model_answer_invalid() -> None:
    with pytest.raises(ModelAnswerInvalid, match="Plan JSON object"):
        parse_answer("I cannot help with that.", Plan)


def test_scripted_model_records_converse_shapes_with_usage_and_zero_cost() -> None:
    with LocalRuntime(support.app) as local:
        job_id = local.start("support.refund", DAMAGED_CABLE)
        drive(local, job_id)
        spend = spend_of(local.runtimes[0].effects(job_id))

    assert spend.calls == 2 and spend.tokens > 0
    assert spend.cost_usd == 0.0 and spend.unpriced_calls == 0
    assert set(spend.by_model) == {SCRIPTED_MODEL_ID}


def test_current_model_with_bedrock_model_id_is_bedrock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHERIS_BEDROCK_MODEL_ID", "anthropic.test-model-v1:0")
    monkeypatch.setenv("AETHERIS_BEDROCK_REGION", "eu-west-1")

    model = current_model()

    assert model.model_id == "anthropic.test-model-v1:0"
    assert model.client.meta.region_name == "eu-west-1"  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", [None, ""])
def test_current_model_without_bedrock_model_id_is_scripted(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("AETHERIS_BEDROCK_MODEL_ID", raising=False)
    else:
        monkeypatch.setenv("AETHERIS_BEDROCK_MODEL_ID", value)

    assert current_model().model_id == SCRIPTED_MODEL_ID


# -- demo -----------------------------------------------------------------------------------------


def test_demo_main_runs_the_faulty_scenario_and_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0

    printed = capsys.readouterr().out
    assert "retry scheduled" in printed and "taken over from worker" in printed
    assert "WAITING for signal 'approval'" in printed and "a human approves" in printed
    assert "advanced the fake clock 3 days" in printed and "timer fired" in printed
    assert "FAIL" not in printed


def test_demo_check_duplicate_refund_approval_survey_or_extra_call_is_reported() -> None:
    run = demo.run_scenario()
    calls = {**run.calls, "payments.refund": {key: 2 for key in run.calls["payments.refund"]}}
    consumed = next(e for e in run.events if e.type is EventType.SIGNAL_CONSUMED)
    survey = next(mail for mail in run.mails_delivered if mail[0].startswith(demo.SURVEY_SUBJECT))

    assert demo.check(run) == []
    assert demo.check(dataclasses.replace(run, refunds_issued=2)) == [
        "2 refunds were issued; exactly one was expected"
    ]
    (problem,) = demo.check(dataclasses.replace(run, calls=calls))
    assert problem.startswith("payments.refund was called 2 times")
    (problem,) = demo.check(dataclasses.replace(run, events=[*run.events, consumed]))
    assert problem.startswith("the approval wait started 1 times and consumed 2 signals")
    (problem,) = demo.check(dataclasses.replace(run, mails_delivered=[*run.mails_delivered, survey]))
    assert problem == "the customer received 2 satisfaction surveys; exactly one was expected"


def test_build_model_says_which_model_it_uses(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from aws_lambda_powertools import Logger

    from agents import model
    from agents.model import ModelSettings, build_model

    printed = io.StringIO()
    monkeypatch.setenv("POWERTOOLS_LOG_LEVEL", "INFO")  # the suite's is WARNING; Lambda's is the template's
    monkeypatch.setattr(model, "logger", Logger(service="agents-model-test", stream=printed))
    monkeypatch.delenv("AETHERIS_BEDROCK_MODEL_ID", raising=False)
    build_model(ModelSettings())
    monkeypatch.setenv("AETHERIS_BEDROCK_MODEL_ID", "anthropic.test-model-v1:0")
    monkeypatch.setenv("AETHERIS_BEDROCK_REGION", "eu-west-1")
    build_model(ModelSettings())

    scripted, bedrock = (json.loads(line)["message"] for line in printed.getvalue().splitlines())
    assert scripted.startswith("support agent model: scripted")
    assert bedrock == "support agent model: Amazon Bedrock anthropic.test-model-v1:0 in eu-west-1"
