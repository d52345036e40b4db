"""The support agent (job ``support.refund``) on the embedded stack: its decisions, its behaviour under
worker crashes and network errors (counted at the fake services), the Bedrock model's Converse
requests and answers (stubbed, no network), and the demo."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from aetheris import EventType, JobStatus, JobView
from aetheris.testing import LocalRuntime
from aetheris_infra import demo
from agents import support
from agents.model import (
    BedrockModel,
    Decision,
    ModelAnswerInvalid,
    ModelSettings,
    Plan,
    ScriptedModel,
    current_model,
    reset_model,
    use_model,
)
from agents.tools import SEED_ORDERS, PolicyVerdict, registry

BROKEN_HEADPHONES = {
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
STEPS_WHEN_APPROVED = ["plan", "lookup_order", "check_policy", "decide", "issue_refund", "reply"]


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
    steps: list[str]
    crashes: list[str]
    failed_steps: list[str]


def run_ticket(ticket: dict[str, str], prepare: Callable[[LocalRuntime], None] | None = None) -> Outcome:
    with LocalRuntime(support.app, workers=2) as local:
        if prepare is not None:
            prepare(local)
        job_id = local.start("support.refund", ticket)
        view = local.wait(job_id)
        events = local.events(job_id)
    return Outcome(
        view=view,
        steps=[e.name or "" for e in events if e.type is EventType.STEP_COMMITTED],
        crashes=[c.point for c in local.crashes],
        failed_steps=[e.name or "" for e in events if e.type is EventType.STEP_FAILED],
    )


def crash_during(service: str, point: str) -> Callable[[LocalRuntime], None]:
    """Arm ``point`` the moment ``service`` is first called: the crash hits that tool's step."""

    def prepare(local: LocalRuntime) -> None:
        def arm(called: str, key: str, nth: int) -> None:
            if called == service and nth == 1:
                local.crash_at(point)  # type: ignore[arg-type]

        registry.calls.observers.append(arm)

    return prepare


# -- decisions ------------------------------------------------------------------------------------


def test_support_refund_eligible_ticket_refunds_once_and_replies() -> None:
    outcome = run_ticket(BROKEN_HEADPHONES)

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.view.result["status"] == "refunded"
    assert outcome.view.result["refund_id"] == "re_0001"
    assert outcome.steps == STEPS_WHEN_APPROVED
    (refund,) = registry.payments.refunds.values()
    assert refund.amount_cents == 12_900
    ((receipt, _subject, body),) = registry.mail.outbox.values()
    assert receipt.to == "ada@example.com" and body == outcome.view.result["reply"]
    assert "re_0001" in body


def test_support_refund_final_sale_ticket_is_denied_without_payment() -> None:
    outcome = run_ticket(FINAL_SALE_LAMP)

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.view.result["status"] == "denied" and outcome.view.result["refund_id"] is None
    assert "issue_refund" not in outcome.steps
    assert registry.calls.count("payments.refund") == 0 and not registry.payments.refunds
    assert "final-sale" in outcome.view.result["reply"]
    assert registry.calls.count("mail.send") == 1


def test_support_refund_ticket_of_another_customer_is_denied() -> None:
    outcome = run_ticket({**BROKEN_HEADPHONES, "customer_id": "cus-7"})

    assert outcome.view.result["status"] == "denied"
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
        local.wait(job_id)
        calls_before = registry.calls.by_service()
        report = local.replay(job_id)

    assert report.consistent and report.reached_end and report.output_matches
    assert report.operations == len(STEPS_WHEN_APPROVED) + 1
    assert registry.calls.by_service() == calls_before


def test_scripted_model_question_without_refund_plans_no_refund() -> None:
    plan = ScriptedModel().plan("Where is my parcel? It never arrived.", "ord-1003")

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
    assert outcome.view.result["refund_id"] == "re_0001"
    assert outcome.steps == STEPS_WHEN_APPROVED
    assert registry.calls.count("payments.refund") == 1 and len(registry.payments.refunds) == 1
    # Only the window between a call and its record makes a service see its key twice.
    assert len(registry.calls.by_service()[service]) == 1
    assert registry.calls.count(service) == (2 if point == "after_effect" else 1)
    assert len(registry.mail.outbox) == 1


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


def test_bedrock_model_plan_sends_converse_request_and_parses_fenced_json(bedrock: Any) -> None:
    client, stubber, sent = bedrock
    answer = f"Here is the plan:\n```json\n{json.dumps(PLAN_ANSWER)}\n```"
    stubber.add_response("converse", converse_response(answer), CONVERSE_REQUEST)

    plan = BedrockModel(client, "anthropic.test-model-v1:0").plan("My headphones arrived broken.", "ord-1001")

    assert plan == Plan.model_validate(PLAN_ANSWER)
    (request,) = sent
    prompt = request["messages"][0]["content"][0]["text"]
    assert "My headphones arrived broken." in prompt and "ord-1001" in prompt
    system = request["system"][0]["text"]
    assert "JSON" in system and '"intent"' in system and "{schema}" not in system


def test_bedrock_model_decide_sends_order_and_verdict_and_parses_decision(bedrock: Any) -> None:
    client, stubber, sent = bedrock
    answer = {"decision": "approve", "reason": "eligible", "amount_cents": 12900, "customer_message": "Done."}
    stubber.add_response("converse", converse_response(json.dumps(answer)), CONVERSE_REQUEST)
    verdict = PolicyVerdict(eligible=True, rule="standard_return", max_refund_cents=12_900, explanation="ok")

    decision = BedrockModel(client, "anthropic.test-model-v1:0").decide(
        Plan.model_validate(PLAN_ANSWER), SEED_ORDERS[0], verdict
    )

    assert decision == Decision.model_validate(answer)
    prompt = sent[0]["messages"][0]["content"][0]["text"]
    assert '"max_refund_cents":12900' in prompt and '"order_id":"ord-1001"' in prompt


def test_bedrock_model_answer_without_json_raises_model_answer_invalid(bedrock: Any) -> None:
    client, stubber, _ = bedrock
    stubber.add_response("converse", converse_response("I cannot help with that."), CONVERSE_REQUEST)

    with pytest.raises(ModelAnswerInvalid, match="Plan JSON object"):
        BedrockModel(client, "anthropic.test-model-v1:0").plan("Refund please", "ord-1001")


def test_support_refund_with_bedrock_model_completes_from_model_answers(bedrock: Any) -> None:
    client, stubber, sent = bedrock
    decision = {"decision": "approve", "reason": "ok", "amount_cents": 12900, "customer_message": "Refunded."}
    stubber.add_response("converse", converse_response(json.dumps(PLAN_ANSWER)), CONVERSE_REQUEST)
    stubber.add_response("converse", converse_response(json.dumps(decision)), CONVERSE_REQUEST)
    use_model(BedrockModel(client, "anthropic.test-model-v1:0"))

    outcome = run_ticket(BROKEN_HEADPHONES)

    assert outcome.view.status is JobStatus.COMPLETED
    assert outcome.view.result["reply"] == "Refunded. Refund reference: re_0001."
    assert len(sent) == 2


def test_current_model_bedrock_env_selects_bedrock_with_model_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHERIS_MODEL", "bedrock")
    monkeypatch.setenv("AETHERIS_BEDROCK_MODEL_ID", "anthropic.test-model-v1:0")

    model = current_model()

    assert isinstance(model, BedrockModel) and model.model_id == "anthropic.test-model-v1:0"


def test_current_model_without_env_is_scripted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AETHERIS_MODEL", raising=False)

    assert isinstance(current_model(), ScriptedModel)


def test_model_settings_bedrock_without_model_id_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AETHERIS_MODEL", "bedrock")
    monkeypatch.delenv("AETHERIS_BEDROCK_MODEL_ID", raising=False)

    with pytest.raises(ValueError, match="AETHERIS_BEDROCK_MODEL_ID"):
        ModelSettings()


# -- demo -----------------------------------------------------------------------------------------


def test_demo_main_runs_the_faulty_scenario_and_returns_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main() == 0

    printed = capsys.readouterr().out
    assert "retry scheduled" in printed and "taken over from worker" in printed
    assert "FAIL" not in printed


def test_demo_check_duplicate_refund_or_extra_call_is_reported() -> None:
    run = demo.run_scenario()
    calls = {**run.calls, "payments.refund": {key: 2 for key in run.calls["payments.refund"]}}

    assert demo.check(run) == []
    assert demo.check(dataclasses.replace(run, refunds_issued=2)) == [
        "2 refunds were issued; exactly one was expected"
    ]
    (problem,) = demo.check(dataclasses.replace(run, calls=calls))
    assert problem.startswith("payments.refund was called 2 times")
