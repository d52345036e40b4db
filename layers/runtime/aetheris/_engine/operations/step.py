"""A step (and a compensation) as a durable operation.

Replay: a settled step returns its recorded result or raises its recorded error; the body is never
called. Live: the body runs on its own thread under the step's time limit (``body.py``) while the
lease is kept alive; its outcome — the result, or the error with the next attempt's time from the
retry policy — is committed into the claimed slot. A retry that is not due yet releases the slot
and comes back when it is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from aetheris import _serde
from aetheris._engine.body import RUNTIME_FLOW, call_within
from aetheris._engine.come_back import ComeBack
from aetheris._engine.history import OpRecord
from aetheris._engine.operations.base import Operation, OperationHost
from aetheris._engine.operations.budget_wait import park_for_budget, parked_on_budget
from aetheris._engine.step_context import StepContext, check_name
from aetheris._engine.store_io import runtime_io
from aetheris._engine.tracing import subsegment
from aetheris.errors import ErrorInfo, rebuild_error
from aetheris.events import Event, EventType, OpKind
from aetheris.policy import DEFAULT_STEP_RETRY, RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation

_SETTLED = (EventType.STEP_COMMITTED, EventType.COMPENSATION_COMMITTED)


class StepOp(Operation[Any]):
    kind = OpKind.STEP
    committed_type = EventType.STEP_COMMITTED

    def __init__(
        self,
        record: OpRecord,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None = None,
        timeout: timedelta | None = None,
    ) -> None:
        super().__init__(record)
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.retry, self.timeout = retry, timeout

    def replayed(self, outcome: Event, host: OperationHost) -> Any:
        if outcome.type in _SETTLED:
            with runtime_io():
                text = host.payloads.text(outcome.result)
            return _serde.load(text, _serde.return_adapter(self.fn))
        raise rebuild_error(outcome.error or ErrorInfo(type="Unknown", message="no error recorded"))

    def execute(self, inv: Invocation) -> NoReturn:
        check_name("step", self.name)
        now = inv.clock.now()
        due = self.record.retry_due_at
        if due is not None and due > now:
            inv.suspend(ComeBack.retry_in(due - now))
        inv.attempt = self.record.failures + 1
        parked_on = parked_on_budget(self.record)
        if parked_on is not None:  # blocked by the budget: only a raise moves it
            park_for_budget(inv, self.record, parked_on)
        over = _over_step_budget(inv, self)
        budget = inv.budget
        if over is not None and budget is not None and budget.on_exceeded == "wait":
            park_for_budget(inv, self.record, budget.raise_signal, over)
        if over is not None:  # recorded as the step's outcome, so replay fails it the same way
            event = inv.commit(EventType.STEP_FAILED, self.record, error=inv.recorder.error(over))
            inv.suspend(ComeBack.after_commit(event, inv.clock.now()))
        policy = self.retry or DEFAULT_STEP_RETRY
        sctx = StepContext(inv, self.record, inv.attempt)
        started = inv.clock.now()
        with inv.keeper:
            try:
                limit = inv.step_time_limit(self.timeout)
                with subsegment(f"step {self.name}", job_id=inv.job_id, attempt=inv.attempt):
                    value = call_within(inv.strict_effects, limit, self.fn, sctx, self.args, self.kwargs)
                adapter = _serde.return_adapter(self.fn)
                text = inv.recorder.value(value, adapter, f"result of step {self.name}")
            except RUNTIME_FLOW:
                raise
            except BaseException as error:  # noqa: BLE001 - any error of the body is the step's outcome
                _park_if_blocked(inv, self.record, sctx)
                retry_at = None
                if not policy.gives_up_on(error, inv.attempt):
                    retry_at = inv.clock.now() + policy.delay_before(inv.attempt + 1, inv.ids.random())
                event = inv.commit(
                    EventType.STEP_FAILED,
                    self.record,
                    started=started,
                    error=inv.recorder.error(error),
                    next_attempt_at=retry_at,
                    detail=_warnings(sctx),
                )
            else:
                _park_if_blocked(inv, self.record, sctx)
                event = inv.commit(
                    self.committed_type, self.record, started=started, result=text, detail=_warnings(sctx)
                )
        inv.suspend(ComeBack.after_commit(event, inv.clock.now()))


class CompensationOp(StepOp):
    """Undoes a committed step when the job fails or is cancelled; not stopped by a cancel."""

    kind = OpKind.COMPENSATE
    committed_type = EventType.COMPENSATION_COMMITTED
    abortable = False


def _over_step_budget(inv: Invocation, op: StepOp) -> Exception | None:
    """``BudgetExceeded`` if this new step would pass the job's ``Budget.max_steps``."""
    budget = inv.budget
    # Checked before a step's first attempt (a retry is no new step); a raise re-checks it.
    if budget is None or budget.max_steps is None or op.kind is not OpKind.STEP or op.record.failures:
        return None
    # The steps settled before this one (a step about to run live has no outcome of its own).
    done = inv.history.settled_steps() - int(op.record.outcome is not None and op.record.kind is OpKind.STEP)
    if done < budget.max_steps:
        return None
    from aetheris.budget import BudgetExceeded

    return BudgetExceeded(inv.job_id, "steps", budget.max_steps, done, 1)


def _park_if_blocked(inv: Invocation, record: OpRecord, sctx: StepContext) -> None:
    """A model call of the body was refused by a waiting budget: park, whatever the body did next."""
    budget = inv.budget
    if sctx.budget_blocked is not None and budget is not None:
        park_for_budget(inv, record, budget.raise_signal, sctx.budget_blocked)


def _warnings(sctx: StepContext) -> dict[str, Any] | None:
    return {"warnings": sctx.warnings} if sctx.warnings else None
