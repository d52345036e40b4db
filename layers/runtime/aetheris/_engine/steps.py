"""One step (or one compensation) as a durable operation.

Replay: a settled step returns its recorded result or re-raises its recorded error, never calling
the body. Live: the body runs on its own thread under the step's timeout (never past what the
Lambda has left); its outcome — result, or error with the next attempt's time from the retry
policy — is committed into the claimed slot. A step that times out is abandoned: its lease is no
longer renewed and any tool call it still makes is refused, so it cannot touch the world after
its outcome was written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from aetheris import _serde
from aetheris._engine import guard
from aetheris._engine.history import OpRecord
from aetheris._engine.step_context import StepContext, check_name
from aetheris._engine.store_io import runtime_io
from aetheris._store.payloads import Payloads
from aetheris.errors import ErrorInfo, StepTimeout, Suspend, WorkerCrashLoop, rebuild_error
from aetheris.events import EventType, OpKind
from aetheris.policy import DEFAULT_STEP_RETRY, RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


def replayed_outcome(op: OpRecord, fn: Callable[..., Any], payloads: Payloads) -> tuple[bool, Any]:
    """``(True, result)`` if the log settled the step (a recorded error raises), else ``(False, None)``."""
    outcome = op.outcome
    if outcome is None:
        return False, None
    if outcome.type in (EventType.STEP_COMMITTED, EventType.COMPENSATION_COMMITTED):
        with runtime_io():
            text = payloads.text(outcome.result)
        return True, _serde.load(text, _serde.return_adapter(fn))
    raise rebuild_error(outcome.error or ErrorInfo(type="Unknown", message="no error recorded"))


def run_step(
    inv: Invocation,
    op: OpRecord,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    retry: RetryPolicy | None,
    timeout: timedelta | None,
) -> Any:
    check_name("step", op.name)
    payloads = inv.services.payloads
    settled, result = replayed_outcome(op, fn, payloads)
    if settled:
        return result
    if op.kind is not OpKind.COMPENSATE:
        inv.check_stop()
    elif isinstance(inv.stop, WorkerCrashLoop):
        # A compensation that keeps killing its workers fails like one out of retries: the saga
        # ends FAILED with CompensationFailed, visible to an operator, instead of looping forever.
        raise inv.stop
    now = inv.clock.now()
    due = op.retry_due_at
    if due is not None and due > now:
        inv.reschedule = due - now
        raise Suspend
    inv.attempt = op.failures + 1
    policy = retry or DEFAULT_STEP_RETRY
    limit = inv.step_time_limit(timeout)
    committed = EventType.COMPENSATION_COMMITTED if op.kind is OpKind.COMPENSATE else EventType.STEP_COMMITTED
    sctx = StepContext(inv, op, inv.attempt)
    started = inv.clock.now()
    with inv.keeper:
        try:
            value = _call_within(inv.definition_strict, limit, fn, sctx, args, kwargs, op.name)
            text = _serde.dump(value, _serde.return_adapter(fn), f"result of step {op.name}", payloads.limit)
            with runtime_io():  # a big result goes to S3 before the commit references it
                text = payloads.offload(inv.job_id, text)
        except Exception as error:  # noqa: BLE001 - a step's error is its recorded outcome
            sctx.abandoned = isinstance(error, StepTimeout)
            retry_at = None
            if not policy.gives_up_on(error, inv.attempt):
                retry_at = inv.clock.now() + policy.delay_before(inv.attempt + 1, inv.ids.random())
            inv.commit(
                EventType.STEP_FAILED,
                op,
                started=started,
                error=ErrorInfo.of(error),
                next_attempt_at=retry_at,
                detail=_warnings(sctx),
            )
        else:
            inv.commit(committed, op, started=started, result=text, detail=_warnings(sctx))
    raise Suspend


def _warnings(sctx: StepContext) -> dict[str, Any] | None:
    return {"warnings": sctx.warnings} if sctx.warnings else None


class _Outcome:
    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.warnings: list[str] = []


def _call_within(
    strict: bool,
    limit: timedelta,
    fn: Callable[..., Any],
    sctx: StepContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str,
) -> Any:
    """Run the body on its own thread and wait at most ``limit`` (real time: it measures the body)."""
    outcome = _Outcome()

    def body() -> None:
        try:
            with guard.watching_step(strict) as watch:
                outcome.warnings = watch.warnings
                outcome.value = fn(sctx, *args, **kwargs)
        except BaseException as error:  # noqa: BLE001 - carried to the caller's thread and re-raised there
            outcome.error = error

    thread = threading.Thread(target=body, name=f"step-{name}", daemon=True)
    thread.start()
    thread.join(limit.total_seconds())
    if thread.is_alive():
        sctx.abandoned = True
        raise StepTimeout(name, limit.total_seconds())
    sctx.warnings.extend(outcome.warnings)
    if outcome.error is not None:
        raise outcome.error
    return outcome.value
