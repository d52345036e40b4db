"""LLM calls as first-class effects: Amazon Bedrock's Converse API as one recorded tool call.

``converse(sctx, model_id, messages, ...)`` runs inside a step. It is ``sctx.tool(name, ...)``: the
call is claimed in the effect ledger, made, and its whole outcome recorded — an ``LlmResult`` with
the request as sent, the response as returned, the model id, ``usage`` (input, output, cache-read
and cache-write tokens), ``stop_reason``, the latency and the cost from the price table
(``_llm/prices.json``, dated). A replayed or retried step gets the recorded result back: the model
is not asked again and the tokens are not counted twice (they live in that one ledger record).

Converse tool use: pass ``tool_config`` (Converse's ``toolConfig``); ``LlmResult.tool_uses`` lists
what the model asked for, and the next ``converse`` call sends the ``toolResult`` blocks back.
Throttling and transient service errors raise ``ModelThrottled`` and are retried by ``retry``
(the tool's ``RetryPolicy``, under the same idempotency key); a rejected request (validation,
access, unknown model) raises ``ModelRequestRejected`` and is not retried. ``check(result)``, if
given, runs before the result is recorded: raise from it to refuse an answer (a malformed JSON
answer, say) and have ``retry`` ask again.

Which client: ``client=`` for one call, else the one ``use_client`` installed, else a
``bedrock-runtime`` client for ``AETHERIS_BEDROCK_REGION`` (built on first use). Offline,
``ScriptedConverse(respond)`` answers in the same shapes, usage included.

Metrics: every call Bedrock answered emits one EMF line (namespace ``POWERTOOLS_METRICS_NAMESPACE``,
dimensions ``model`` and ``service=worker``): ``LlmCalls``, ``LlmInputTokens``, ``LlmOutputTokens``,
``LlmCacheReadTokens``, ``LlmCacheWriteTokens`` and, for a priced model, ``LlmCostUsd``. They
count calls made (what is billed, including an answer refused by ``check`` or lost to a crash
before its record); the ledger holds what was recorded. A replay makes no call and emits nothing.

Budgets: before the call, ``converse`` asks the job's budget (``aetheris.budget``) whether the
call may be made; one that would exceed it is not made (``BudgetExceeded``, terminal).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final, Protocol

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict

from aetheris._llm.prices import Price, PriceTable, Usage, base_model_id, price_table
from aetheris._llm.scripted import ScriptedConverse
from aetheris.errors import AetherisError, NonRetryableError
from aetheris.policy import RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.step_context import StepContext

__all__ = [
    "LLM_RETRY",
    "ConverseClient",
    "LlmResult",
    "ModelRequestRejected",
    "ModelThrottled",
    "Price",
    "PriceTable",
    "ScriptedConverse",
    "Usage",
    "base_model_id",
    "converse",
    "price_table",
    "use_client",
]

# Bedrock's error codes worth asking again (with backoff) and those no retry can fix.
_TRANSIENT: Final = frozenset(
    {
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalServerException",
        "ModelNotReadyException",
    }
    | {"ModelTimeoutException", "TooManyRequestsException"}
)
LLM_RETRY: Final = RetryPolicy(
    max_attempts=6, initial_interval=timedelta(seconds=1), max_interval=timedelta(seconds=30)
)


class ModelThrottled(AetherisError):
    """Bedrock throttled the call or was briefly unavailable: retried by the call's ``RetryPolicy``."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"the model call failed with {code} ({message}); it is retried with backoff")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


class ModelRequestRejected(NonRetryableError):
    """Bedrock refused the request (validation, access, unknown model): asking again cannot help."""

    def __init__(self, code: str, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"the model refused the request: {code}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.code, self.message))


class ConverseClient(Protocol):
    """What ``converse`` needs of a client: boto3's ``bedrock-runtime`` ``converse``."""

    def converse(self, **request: Any) -> Mapping[str, Any]: ...


class LlmResult(BaseModel):
    """One model call as the ledger records it."""

    model_config = ConfigDict(frozen=True)

    model_id: str
    request: dict[str, Any]
    response: dict[str, Any]
    stop_reason: str
    usage: Usage
    latency_ms: int
    cost_usd: float | None
    prices_as_of: str | None = None

    @property
    def message(self) -> dict[str, Any]:
        """The assistant message (append it to ``messages`` to continue the conversation)."""
        message: dict[str, Any] = self.response.get("output", {}).get("message", {})
        return message

    @property
    def text(self) -> str:
        return "".join(str(block["text"]) for block in self.message.get("content", []) if "text" in block)

    @property
    def tool_uses(self) -> list[dict[str, Any]]:
        """``{"toolUseId", "name", "input"}`` of every tool the model asked for."""
        return [block["toolUse"] for block in self.message.get("content", []) if "toolUse" in block]


_installed: list[ConverseClient] = []
_default: dict[str | None, ConverseClient] = {}
_lock = threading.Lock()


def use_client(client: ConverseClient | None) -> None:
    """Install ``client`` for every call of this process that passes none (``None``: back to Bedrock)."""
    _installed[:] = [] if client is None else [client]


def _client(region: str | None) -> ConverseClient:
    if _installed:
        return _installed[0]
    with _lock:
        if region not in _default:
            import boto3

            client: ConverseClient = boto3.client("bedrock-runtime", region_name=region)
            _default[region] = client
        return _default[region]


def converse(
    sctx: StepContext,
    model_id: str,
    messages: str | Sequence[Mapping[str, Any]],
    *,
    system: str | Sequence[Mapping[str, Any]] | None = None,
    tool_config: Mapping[str, Any] | None = None,
    max_tokens: int = 1024,
    temperature: float | None = None,
    retry: RetryPolicy = LLM_RETRY,
    name: str = "llm.converse",
    client: ConverseClient | None = None,
    check: Callable[[LlmResult], object] | None = None,
) -> LlmResult:
    """Ask ``model_id`` through Converse, as the recorded tool call ``name`` of this step.

    ``messages`` is Converse's message list (a string is one user message); ``system`` a string
    or Converse's system blocks. Returns the recorded ``LlmResult``.
    """
    request: dict[str, Any] = {"modelId": model_id, "messages": _messages(messages)}
    if system is not None:
        request["system"] = [{"text": system}] if isinstance(system, str) else [dict(b) for b in system]
    inference: dict[str, Any] = {"maxTokens": max_tokens}
    if temperature is not None:
        inference["temperature"] = temperature
    request["inferenceConfig"] = inference
    if tool_config is not None:
        request["toolConfig"] = dict(tool_config)
    from aetheris import budget  # the budget module imports this one's result model

    budget.before_call(sctx, model_id, request, name)
    chosen = client or _client(_settings_region())
    return sctx.tool(name, _call, chosen, request, check, retry=retry)


def _call(
    client: ConverseClient, request: dict[str, Any], check: Callable[[LlmResult], object] | None
) -> LlmResult:
    started = time.perf_counter()  # latency is a measurement, recorded once: no clock to inject
    try:
        response = dict(client.converse(**request))
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "ClientError"))
        message = str(error.response.get("Error", {}).get("Message", error))
        if code in _TRANSIENT:
            raise ModelThrottled(code, message) from error
        raise ModelRequestRejected(code, message) from error
    latency_ms = int((time.perf_counter() - started) * 1000)
    response.pop("ResponseMetadata", None)  # HTTP details of one attempt, not the answer
    usage = Usage.of_converse(response.get("usage"))
    table = price_table()
    price = table.price(str(request["modelId"]))
    result = LlmResult(
        model_id=str(request["modelId"]),
        request=request,
        response=response,
        stop_reason=str(response.get("stopReason", "")),
        usage=usage,
        latency_ms=latency_ms,
        cost_usd=None if price is None else price.cost(usage),
        prices_as_of=None if price is None else table.as_of,
    )
    _emit_metrics(result)
    if check is not None:
        check(result)
    return result


def _emit_metrics(result: LlmResult) -> None:
    # An isolated metric set: the handlers' shared one must not get a per-model dimension.
    import os

    from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit

    # Metrics describe the call; they must never fail it (no namespace configured, a user's env).
    namespace = os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "Aetheris"
    metrics = EphemeralMetrics(namespace=namespace, service="worker")
    metrics.add_dimension(name="model", value=result.model_id)
    usage = result.usage
    metrics.add_metric(name="LlmCalls", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="LlmInputTokens", unit=MetricUnit.Count, value=usage.input_tokens)
    metrics.add_metric(name="LlmOutputTokens", unit=MetricUnit.Count, value=usage.output_tokens)
    metrics.add_metric(name="LlmCacheReadTokens", unit=MetricUnit.Count, value=usage.cache_read_tokens)
    metrics.add_metric(name="LlmCacheWriteTokens", unit=MetricUnit.Count, value=usage.cache_write_tokens)
    if result.cost_usd is not None:
        metrics.add_metric(name="LlmCostUsd", unit=MetricUnit.NoUnit, value=result.cost_usd)
    metrics.flush_metrics()


def _messages(messages: str | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(messages, str):
        return [{"role": "user", "content": [{"text": messages}]}]
    return [dict(message) for message in messages]


def _settings_region() -> str | None:
    import os

    # Read when a call needs the default client (never at import): the template sets it.
    return os.environ.get("AETHERIS_BEDROCK_REGION") or None
