"""The support agent's language model: two questions, each one recorded Converse call (``aetheris.llm``).

``ConverseModel.plan`` reads a ticket and returns a ``Plan``; ``ConverseModel.decide`` weighs the
order and the refund policy's verdict and returns a ``Decision``. Both ask through
``aetheris.llm.converse`` inside the calling step, so the request, the answer, the token usage and
the cost are recorded in the effect ledger and a replay never asks again. The answer must be one
JSON object valid for the pydantic model; one that is not raises ``ModelAnswerInvalid`` before it
is recorded, and the call's retry policy asks again.

The same class serves both models: Amazon Bedrock (a ``bedrock-runtime`` client) and the scripted
model (``ScriptedModel()``: ``ScriptedConverse`` answering from ``ScriptedRules``, fixed keyword
rules, deterministic and offline) — so the offline path exercises Converse's shapes, usage
included. ``current_model()`` is the one ``use_model`` installed, else the configured one:
Bedrock when ``AETHERIS_BEDROCK_MODEL_ID`` is set (the template's ``ModelId``, in
``AETHERIS_BEDROCK_REGION``), the scripted model otherwise; it says which in the log when it is
first built. ``reset_model()`` forgets both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, TypeVar

import boto3
from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from aetheris import StepContext, llm

from .tools import Order, PolicyVerdict, registry

Answer = TypeVar("Answer", bound=BaseModel)
Reason = Literal["damaged", "not_as_described", "late", "changed_mind", "other"]
SCRIPTED_MODEL_ID = "aetheris.scripted"
logger = Logger(service="agents")


class Plan(BaseModel):
    """What the ticket asks for and how the agent means to handle it."""

    model_config = ConfigDict(frozen=True)

    intent: Literal["refund", "other"]
    reason: Reason
    summary: str
    actions: list[str] = Field(description="the tools the agent expects to call, in order")


class Decision(BaseModel):
    model_config = ConfigDict(frozen=True)

    decision: Literal["approve", "deny"]
    reason: str
    amount_cents: int = Field(ge=0)
    customer_message: str = Field(description="the reply to the customer, without greeting or signature")

    @property
    def approved(self) -> bool:
        return self.decision == "approve"


class ModelAnswerInvalid(ValueError):
    """The model's answer was not the JSON object asked for (retryable: a new sample may be)."""

    def __init__(self, answer: str, problem: str) -> None:
        self.answer, self.problem = answer, problem
        super().__init__(f"the model's answer is not a valid {problem}: {answer[:200]!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.answer, self.problem))


# -- scripted -------------------------------------------------------------------------------------

_REASON_WORDS: tuple[tuple[Reason, tuple[str, ...]], ...] = (
    ("damaged", ("broken", "damaged", "defective", "cracked", "stopped working", "doesn't work")),
    ("not_as_described", ("wrong item", "not as described", "different from")),
    ("late", ("never arrived", "hasn't arrived", "late")),
    ("changed_mind", ("changed my mind", "no longer need", "don't need")),
)
_REFUND_WORDS = ("refund", "money back", "reimburse", "return it")


class ScriptedRules:
    """Keyword rules standing in for an LLM: the same ticket always gets the same plan and decision."""

    def plan(self, message: str, order_id: str) -> Plan:
        text = message.lower()
        reason: Reason = next((r for r, words in _REASON_WORDS if any(w in text for w in words)), "other")
        if not any(word in text for word in _REFUND_WORDS):
            return Plan(
                intent="other",
                reason=reason,
                summary=f"Question about order {order_id}; no refund requested.",
                actions=["crm.get_order", "mail.send"],
            )
        return Plan(
            intent="refund",
            reason=reason,
            summary=f"Refund requested for order {order_id} ({reason.replace('_', ' ')}).",
            actions=["crm.get_order", "policy.check_refund", "llm.decide", "payments.refund", "mail.send"],
        )

    def decide(self, plan: Plan, order: Order, verdict: PolicyVerdict) -> Decision:
        if plan.intent != "refund":
            return Decision(
                decision="deny",
                reason="The ticket does not ask for a refund.",
                amount_cents=0,
                customer_message=f"Thanks for your message about your {order.item}; a colleague will reply.",
            )
        if not verdict.eligible:
            return Decision(
                decision="deny",
                reason=f"policy rule {verdict.rule}: {verdict.explanation}",
                amount_cents=0,
                customer_message=f"We are sorry: we cannot refund your {order.item}. {verdict.explanation}",
            )
        amount = verdict.max_refund_cents
        return Decision(
            decision="approve",
            reason=f"policy rule {verdict.rule}: {verdict.explanation}",
            amount_cents=amount,
            customer_message=(
                f"We are sorry about your {order.item}. We have refunded ${amount / 100:.2f} "
                "to your original payment method."
            ),
        )


# -- the model behind Converse ---------------------------------------------------------------------

_ANSWER_RULES = "Answer with one JSON object and nothing else. It must match this JSON schema: {schema}"
PLAN_SYSTEM = (
    "You are the triage step of an online shop's customer-support agent. Read the customer's ticket, "
    "say whether it asks for a refund and why, and list the tools you expect to need among "
    "crm.get_order, policy.check_refund, llm.decide, payments.refund and mail.send. " + _ANSWER_RULES
)
DECIDE_SYSTEM = (
    "You decide refunds for an online shop's customer-support agent. Approve only when the ticket "
    "asks for a refund and the policy verdict is eligible; never approve more than max_refund_cents. "
    "Write a short, kind customer_message that states the outcome. " + _ANSWER_RULES
)


class _Counted:
    """The model as one more outside service: every call is counted at the fakes' call log."""

    def __init__(self, inner: llm.ConverseClient, name: str, key: str) -> None:
        self._inner, self._name, self._key = inner, name, key

    def converse(self, **request: Any) -> Mapping[str, Any]:
        registry.calls.record(self._name, self._key)
        return self._inner.converse(**request)


class ConverseModel:
    """An LLM behind the Converse API (Bedrock, or a scripted client), answering in validated JSON."""

    def __init__(
        self,
        client: llm.ConverseClient,
        model_id: str,
        *,
        max_tokens: int = 1024,
        temperature: float = 0.0,
    ) -> None:
        self.client = client
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.temperature = temperature

    def plan(self, sctx: StepContext, message: str, order_id: str) -> Plan:
        return self._ask(sctx, "llm.plan", PLAN_SYSTEM, f"Order id: {order_id}\nTicket:\n{message}", Plan)

    def decide(self, sctx: StepContext, plan: Plan, order: Order, verdict: PolicyVerdict) -> Decision:
        prompt = "\n".join(
            (
                f"Plan: {plan.model_dump_json()}",
                f"Order: {order.model_dump_json()}",
                f"Policy verdict: {verdict.model_dump_json()}",
            )
        )
        return self._ask(sctx, "llm.decide", DECIDE_SYSTEM, prompt, Decision)

    def _ask(self, sctx: StepContext, name: str, system: str, prompt: str, answer: type[Answer]) -> Answer:
        client = _Counted(self.client, name, sctx.idempotency_key(name))
        result = llm.converse(
            sctx,
            self.model_id,
            prompt,
            system=system.format(schema=json.dumps(answer.model_json_schema())),
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            name=name,
            client=client,
            check=lambda recorded: parse_answer(recorded.text, answer),  # refuse a malformed answer
        )
        return parse_answer(result.text, answer)


def parse_answer(text: str, answer: type[Answer]) -> Answer:
    """The JSON object in ``text`` (prose or a code fence around it is ignored) as an ``answer``."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ModelAnswerInvalid(text, f"{answer.__name__} JSON object (none found)")
    try:
        return answer.model_validate_json(text[start : end + 1])
    except ValidationError as invalid:
        raise ModelAnswerInvalid(text, f"{answer.__name__} ({invalid.error_count()} errors)") from invalid


def scripted_answer(request: Mapping[str, Any]) -> str:
    """What ``ScriptedRules`` answers to a ``ConverseModel`` request, as the model's JSON text."""
    system = str(request["system"][0]["text"])
    prompt = str(request["messages"][-1]["content"][0]["text"])
    rules = ScriptedRules()
    if system.startswith(PLAN_SYSTEM.split("{", 1)[0][:60]):
        header, _, message = prompt.partition("\nTicket:\n")
        return rules.plan(message, header.removeprefix("Order id: ")).model_dump_json()
    lines = dict(line.split(": ", 1) for line in prompt.splitlines())
    return rules.decide(
        Plan.model_validate_json(lines["Plan"]),
        Order.model_validate_json(lines["Order"]),
        PolicyVerdict.model_validate_json(lines["Policy verdict"]),
    ).model_dump_json()


def ScriptedModel() -> ConverseModel:
    """The offline model: ``ScriptedRules`` behind ``ScriptedConverse``, in Converse's shapes."""
    return ConverseModel(llm.ScriptedConverse(scripted_answer), SCRIPTED_MODEL_ID)


# -- selection ------------------------------------------------------------------------------------


class ModelSettings(BaseSettings):
    """Which model the agent uses; read from ``AETHERIS_*`` variables on first use."""

    model_config = SettingsConfigDict(env_prefix="AETHERIS_", frozen=True, extra="ignore")

    bedrock_model_id: str | None = None  # empty or unset: the scripted model
    bedrock_region: str | None = None
    bedrock_max_tokens: int = Field(default=1024, ge=1)


def build_model(settings: ModelSettings) -> ConverseModel:
    if not settings.bedrock_model_id:
        logger.info("support agent model: scripted (offline rules); set ModelId to use Amazon Bedrock")
        return ScriptedModel()
    logger.info(
        f"support agent model: Amazon Bedrock {settings.bedrock_model_id} in {settings.bedrock_region}",
        model_id=settings.bedrock_model_id,
    )
    client: llm.ConverseClient = boto3.client("bedrock-runtime", region_name=settings.bedrock_region)
    return ConverseModel(client, settings.bedrock_model_id, max_tokens=settings.bedrock_max_tokens)


_chosen: list[ConverseModel] = []  # a model installed with ``use_model``, ahead of the configured one


def use_model(model: ConverseModel | None) -> None:
    """Install ``model`` for every step of this process (``None`` goes back to the configured one)."""
    _chosen[:] = [] if model is None else [model]


def current_model() -> ConverseModel:
    """The installed model if any, else the configured one, built on first use (not at import)."""
    return _chosen[0] if _chosen else _configured_model()


@lru_cache(maxsize=1)
def _configured_model() -> ConverseModel:
    return build_model(ModelSettings())


def reset_model() -> None:
    """Forget the installed model and the configuration read so far."""
    use_model(None)
    _configured_model.cache_clear()
