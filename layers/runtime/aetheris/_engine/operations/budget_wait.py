"""A step blocked by its job's budget (``Budget(on_exceeded="wait")``) parks on a signal that raises it.

The step (or its model call) that would pass a limit is not run; instead the step operation itself
parks: ``WaitStarted`` on the step's own operation (status ``WAITING``, ``waiting_for`` = the
budget's ``raise_signal``), then — with the same no-lost-wake-up order as ``wait_for_signal``
(``park.py``: park, then look in the inbox) — a signal of that name is consumed as
``SignalConsumed`` on the same operation, its payload (``BudgetRaise``) recorded in the event's
``detail.budget_raise``. The step is not settled by either event (``OpRecord.outcome``): the next
tick runs its body again, under the budget the log now says (``budget.effective`` applies every
recorded raise in order, so a replay sees the same limits at the same place). Tool calls the body
recorded before it was blocked are answered from the ledger; the blocked call is made at most once,
after a raise that pays for it. A payload that is not a ``BudgetRaise`` is consumed and refused
(``detail.refused``); the step then parks again.

Rejected: a separate wait operation inserted before the step (the job function did not ask for one,
so replay would diverge), and a wait inside the step's body (a body cannot park: it runs on one
invocation's thread).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from pydantic import ValidationError

from aetheris._engine.come_back import ComeBack
from aetheris._engine.history import OpRecord
from aetheris._engine.store_io import runtime_io
from aetheris.budget import BudgetExceeded, BudgetRaise
from aetheris.events import EventType

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


def parked_on_budget(record: OpRecord) -> str | None:
    """The signal the step waits for, if its last event parked it on its budget."""
    last = record.events[-1] if record.events else None
    if last is None or last.type is not EventType.WAIT_STARTED:
        return None
    return str(last.detail.get("signal") or "budget")


def park_for_budget(
    inv: Invocation, record: OpRecord, signal: str, exceeded: BaseException | None = None
) -> NoReturn:
    """Consume a waiting raise, or park the step on ``signal``; raises ``Suspend`` either way."""
    now = inv.clock.now()
    consumed = inv.history.consumed_signals()
    with runtime_io():
        arrived = inv.services.inbox.pending(inv.job_id, signal, consumed)
    if arrived:
        first = arrived[0]
        detail: dict[str, Any] = {
            "signal": signal,
            "signal_id": first.signal_id,
            "arrived_at_ms": first.arrived_at_ms,
        }
        with runtime_io():
            payload = inv.payloads.json(first.payload_json)
        try:
            detail["budget_raise"] = BudgetRaise.model_validate(payload).model_dump(exclude_unset=True)
        except ValidationError as invalid:
            detail["refused"] = f"not a BudgetRaise: {invalid.errors()[0].get('msg', 'invalid')}"[:300]
        event = inv.commit(EventType.SIGNAL_CONSUMED, record, result=first.payload_json, detail=detail)
        inv.suspend(ComeBack.after_commit(event, now))
    if parked_on_budget(record) is None:
        blocked: dict[str, Any] = {"signal": signal, "deadline": None}
        if isinstance(exceeded, BudgetExceeded):
            blocked["budget"] = {
                "limit": exceeded.limit,
                "allowed": exceeded.allowed,
                "spent": exceeded.spent,
                "needed": exceeded.needed,
            }
        event = inv.commit(
            EventType.WAIT_STARTED, record, detail=blocked, parked={"waiting_for": signal, "due": None}
        )
        with runtime_io():
            landed = inv.services.inbox.pending(inv.job_id, signal, consumed)
        inv.suspend(ComeBack.after_commit(event, now, wake_now=bool(landed)))
    inv.suspend(ComeBack.when_woken())  # parked already: an early or duplicate tick changes nothing
