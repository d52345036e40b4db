"""Per-job budgets for model calls: ``@app.job(..., budget=Budget(max_tokens=..., max_cost_usd=...))``.

What a job has spent is not a counter kept on the side: it is computed, before each model call,
from the job's own recorded model calls in the effect ledger (one consistent Query of the job's
ledger entries; each recorded ``LlmResult`` carries its usage and cost). So spending is exactly as
durable as the calls: a call recorded before a crash is counted once, a replayed call is the same
ledger record (never counted twice), and a call that was never recorded costs nothing here.

A call is made only if the budget can pay for its worst case: what was spent, plus the call's
prompt (estimated at four characters a token) and its whole ``max_tokens`` of answer, priced from
the price table. One that cannot is not made: the step fails with ``BudgetExceeded``, a
``NonRetryableError``, so the job fails (its compensations run) unless it catches the error — for
instance to wait for a signal and go on with a cheaper model. A call this step already recorded
is returned from the ledger without a check (it costs nothing more).

Rejected alternative: a per-job spend item updated with a conditional write after each call. It
costs a write per call and has its own crash window (called, recorded, not yet added), which the
ledger already closes.

``max_steps`` is declared here but enforced by the engine (it counts operations, not model calls).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from aetheris._llm.prices import Usage, price_table
from aetheris.errors import NonRetryableError
from aetheris.events import Event, EventType

if TYPE_CHECKING:
    from aetheris._engine.step_context import StepContext

__all__ = ["Budget", "BudgetExceeded", "BudgetRaise", "Spend", "before_call", "effective", "spend_of"]


class Budget(BaseModel):
    """Limits of one job; ``None`` is no limit.

    ``on_exceeded="fail"`` (the default): the call or step that would exceed a limit is not made and
    raises ``BudgetExceeded``. ``"wait"``: it is not made either, and the job parks instead
    (``WAITING``, ``waiting_for`` = ``raise_signal``) until a signal ``raise_signal`` arrives whose
    payload (a ``BudgetRaise``) sets new limits; then the blocked step runs again and the call is made
    if the raised budget allows it (else the job parks again).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # no true-as-1

    max_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_steps: int | None = Field(default=None, ge=1)
    on_exceeded: Literal["fail", "wait"] = "fail"
    raise_signal: str = Field(default="budget", pattern=r"^[A-Za-z0-9_.\-/]{1,100}$")


class BudgetRaise(BaseModel):
    """The payload of a budget-raise signal: the limits given replace the job's (others stay)."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)  # no true-as-1

    max_tokens: int | None = Field(default=None, ge=0)
    max_cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    max_steps: int | None = Field(default=None, ge=1)


def effective(base: Budget | None, stored: str | None, events: Iterable[Event]) -> Budget | None:
    """The job's budget now: its per-start one (``stored``) or else its type's (``base``), with every
    raise recorded in its log applied in order — so a replay sees the same limits at the same place."""
    budget = Budget.model_validate_json(stored) if stored else base
    for event in events:
        raise_ = event.detail.get("budget_raise") if event.type is EventType.SIGNAL_CONSUMED else None
        if budget is not None and isinstance(raise_, dict):
            budget = budget.model_copy(
                update=BudgetRaise.model_validate(raise_).model_dump(exclude_unset=True)
            )
    return budget


class Spend(BaseModel):
    """What a job's recorded model calls used, in total and per model."""

    calls: int = 0
    tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0  # calls to models the price table does not know: tokens only
    by_model: dict[str, Usage] = {}


class BudgetExceeded(NonRetryableError):
    """The next model call could cost more than the job's budget has left: it was not made."""

    def __init__(self, job_id: str, limit: str, allowed: float, spent: float, needed: float) -> None:
        self.job_id, self.limit = job_id, limit
        self.allowed, self.spent, self.needed = allowed, spent, needed
        if limit == "steps":
            super().__init__(
                f"job {job_id}: its Budget allows {allowed:g} steps and {spent:g} have run; the next step "
                "was not run. Raise the job's Budget (max_steps), or catch BudgetExceeded to end early."
            )
            return
        super().__init__(
            f"job {job_id}: the next model call could need {needed:g} {limit} but only "
            f"{max(0.0, allowed - spent):g} of its {allowed:g} are left ({spent:g} spent); the call was not "
            "made. Raise the job's Budget, or catch BudgetExceeded to end or wait for more."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.limit, self.allowed, self.spent, self.needed))


def _as_llm_result(result_json: Any) -> dict[str, Any] | None:
    if not isinstance(result_json, str):
        return None
    try:
        value = json.loads(result_json)
    except ValueError:
        return None
    keys = ("model_id", "usage", "cost_usd", "request")
    return value if isinstance(value, dict) and all(k in value for k in keys) else None


def spend_of(entries: list[dict[str, Any]], *, skip_key: str | None = None) -> Spend:
    """The spend recorded in a job's ledger entries (results resolved), leaving out ``skip_key``."""
    spend = Spend()
    for entry in entries:
        if entry.get("state") != "RECORDED" or entry.get("idempotency_key") == skip_key:
            continue
        result = _as_llm_result(entry.get("result"))
        if result is None:
            continue
        usage = Usage.model_validate(result["usage"])
        spend.calls += 1
        spend.tokens += usage.total_tokens
        if result["cost_usd"] is None:
            spend.unpriced_calls += 1
        else:
            spend.cost_usd += float(result["cost_usd"])
        seen = spend.by_model.get(result["model_id"], Usage())
        spend.by_model[result["model_id"]] = Usage(
            input_tokens=seen.input_tokens + usage.input_tokens,
            output_tokens=seen.output_tokens + usage.output_tokens,
            cache_read_tokens=seen.cache_read_tokens + usage.cache_read_tokens,
            cache_write_tokens=seen.cache_write_tokens + usage.cache_write_tokens,
        )
    return spend


def _worst_case(model_id: str, request: dict[str, Any]) -> tuple[int, float | None]:
    prompt = json.dumps([request.get("system"), request.get("messages"), request.get("toolConfig")])
    input_tokens = max(1, (len(prompt) + 3) // 4)
    output_tokens = int(request.get("inferenceConfig", {}).get("maxTokens", 0))
    price = price_table().price(model_id)
    cost = (
        None if price is None else price.cost(Usage(input_tokens=input_tokens, output_tokens=output_tokens))
    )
    return input_tokens + output_tokens, cost


def before_call(sctx: StepContext, model_id: str, request: dict[str, Any], name: str) -> None:
    """Refuse the model call ``name`` of this step if the job's budget cannot pay for its worst case."""
    limits = sctx.job_budget
    if limits is None or (limits.max_tokens is None and limits.max_cost_usd is None):
        return
    key = sctx.idempotency_key(name)
    entries = sctx.ledger_entries()
    if any(e.get("idempotency_key") == key and e.get("state") == "RECORDED" for e in entries):
        return  # this very call is recorded: the ledger answers it, nothing is spent
    spent = spend_of(entries)
    tokens, cost = _worst_case(model_id, request)
    exceeded: BudgetExceeded | None = None
    if limits.max_tokens is not None and spent.tokens + tokens > limits.max_tokens:
        exceeded = BudgetExceeded(sctx.job_id, "tokens", limits.max_tokens, spent.tokens, tokens)
    elif limits.max_cost_usd is not None:
        if cost is None:
            exceeded = BudgetExceeded(
                sctx.job_id, "USD (model not in the price table)", limits.max_cost_usd, 0, 0
            )
        elif spent.cost_usd + cost > limits.max_cost_usd:
            exceeded = BudgetExceeded(
                sctx.job_id, "USD", limits.max_cost_usd, round(spent.cost_usd, 10), cost
            )
    if exceeded is not None:
        if limits.on_exceeded == "wait":
            sctx.budget_blocked = exceeded  # the step parks on the raise signal (operations/budget_wait.py)
        raise exceeded
