"""The support agent's language model, behind a two-call ``Model`` protocol with structured answers.

``plan`` reads a ticket and returns a ``Plan``; ``decide`` weighs the order and the refund policy's
verdict and returns a ``Decision``. ``ScriptedModel`` answers from fixed rules — deterministic and
offline, the default, what the tests and the demo use. ``BedrockModel`` asks Amazon Bedrock's
Converse API for a JSON object and validates it into the same pydantic models; a malformed answer
raises ``ModelAnswerInvalid``, a retryable error, so the step's retry policy asks again.
``current_model()`` is the one ``use_model`` installed, else the one ``ModelSettings`` configures
(``AETHERIS_MODEL=bedrock`` and ``AETHERIS_BEDROCK_MODEL_ID``), read on first use and cached;
``reset_model()`` forgets both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Literal, Protocol, TypeVar, cast

import boto3
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .tools import Order, PolicyVerdict

Answer = TypeVar("Answer", bound=BaseModel)
Reason = Literal["damaged", "not_as_described", "late", "changed_mind", "other"]


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


class Model(Protocol):
    def plan(self, message: str, order_id: str) -> Plan: ...

    def decide(self, plan: Plan, order: Order, verdict: PolicyVerdict) -> Decision: ...


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


class ScriptedModel:
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


# -- Amazon Bedrock -------------------------------------------------------------------------------


class ConverseClient(Protocol):
    """The one ``bedrock-runtime`` client method the agent uses."""

    def converse(self, **request: Any) -> Mapping[str, Any]: ...


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


class BedrockModel:
    """An LLM on Amazon Bedrock, through the Converse API, answering in validated JSON."""

    def __init__(
        self, client: ConverseClient, model_id: str, *, max_tokens: int = 1024, temperature: float = 0.0
    ) -> None:
        self._client = client
        self.model_id = model_id
        self.max_tokens = max_tokens
        self.temperature = temperature

    def plan(self, message: str, order_id: str) -> Plan:
        prompt = f"Order id: {order_id}\nTicket:\n{message}"
        return self._ask(PLAN_SYSTEM, prompt, Plan)

    def decide(self, plan: Plan, order: Order, verdict: PolicyVerdict) -> Decision:
        prompt = "\n".join(
            (
                f"Plan: {plan.model_dump_json()}",
                f"Order: {order.model_dump_json()}",
                f"Policy verdict: {verdict.model_dump_json()}",
            )
        )
        return self._ask(DECIDE_SYSTEM, prompt, Decision)

    def request(self, system: str, prompt: str, answer: type[BaseModel]) -> dict[str, Any]:
        """The Converse request for one question; ``{schema}`` in ``system`` becomes the answer's schema."""
        return {
            "modelId": self.model_id,
            "system": [{"text": system.format(schema=json.dumps(answer.model_json_schema()))}],
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
            "inferenceConfig": {"maxTokens": self.max_tokens, "temperature": self.temperature},
        }

    def _ask(self, system: str, prompt: str, answer: type[Answer]) -> Answer:
        response = self._client.converse(**self.request(system, prompt, answer))
        blocks = response["output"]["message"]["content"]
        return parse_answer("".join(str(block.get("text", "")) for block in blocks), answer)


def parse_answer(text: str, answer: type[Answer]) -> Answer:
    """The JSON object in ``text`` (prose or a code fence around it is ignored) as an ``answer``."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        raise ModelAnswerInvalid(text, f"{answer.__name__} JSON object (none found)")
    try:
        return answer.model_validate_json(text[start : end + 1])
    except ValidationError as invalid:
        raise ModelAnswerInvalid(text, f"{answer.__name__} ({invalid.error_count()} errors)") from invalid


# -- selection ------------------------------------------------------------------------------------


class ModelSettings(BaseSettings):
    """Which model the agent uses; read from ``AETHERIS_*`` variables on first use."""

    model_config = SettingsConfigDict(env_prefix="AETHERIS_", frozen=True, extra="ignore")

    model: Literal["scripted", "bedrock"] = "scripted"
    bedrock_model_id: str | None = None
    bedrock_region: str | None = None
    bedrock_max_tokens: int = Field(default=1024, ge=1)

    @model_validator(mode="after")
    def _bedrock_needs_a_model_id(self) -> ModelSettings:
        if self.model == "bedrock" and not self.bedrock_model_id:
            raise ValueError("AETHERIS_MODEL=bedrock needs AETHERIS_BEDROCK_MODEL_ID (a Bedrock model id)")
        return self


def build_model(settings: ModelSettings) -> Model:
    if settings.model == "scripted" or settings.bedrock_model_id is None:
        return ScriptedModel()
    client = cast(ConverseClient, boto3.client("bedrock-runtime", region_name=settings.bedrock_region))
    return BedrockModel(client, settings.bedrock_model_id, max_tokens=settings.bedrock_max_tokens)


_chosen: list[Model] = []  # a model installed with ``use_model``, ahead of the configured one


def use_model(model: Model | None) -> None:
    """Install ``model`` for every step of this process (``None`` goes back to the configured one)."""
    _chosen[:] = [] if model is None else [model]


def current_model() -> Model:
    """The installed model if any, else the configured one, built on first use (not at import)."""
    return _chosen[0] if _chosen else _configured_model()


@lru_cache(maxsize=1)
def _configured_model() -> Model:
    return build_model(ModelSettings())


def reset_model() -> None:
    """Forget the installed model and the configuration read so far."""
    use_model(None)
    _configured_model.cache_clear()
