"""Compensation (saga): when a job fails terminally or is cancelled, undo its committed steps.

Every step committed with ``compensate=`` registers its undo function as the job function replays.
On an unhandled error (or a cancellation) the undo functions run in reverse order, each as its own
durable operation — with its own retries and effect ledger, so a compensation never runs twice —
with the job ``COMPENSATING``. Then the job ends ``FAILED`` with its original error, or
``CANCELLED``. A compensation that exhausts its retries ends the job ``FAILED`` with
``CompensationFailed`` naming the step and the compensations that did not run: visible to an
operator, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aetheris._engine.history import OpRecord
from aetheris._engine.steps import run_step
from aetheris.errors import CompensationFailed, ErrorInfo, NondeterminismError
from aetheris.events import EventType, OpKind

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


@dataclass(frozen=True)
class Compensation:
    step: OpRecord
    undo: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


def compensate_then_end(inv: Invocation, terminal: EventType, error: BaseException | None) -> None:
    """Run the pending compensations (one per invocation), then commit ``terminal``."""
    pending = list(reversed(inv.compensations))
    done: list[str] = []
    for index, entry in enumerate(pending):
        op = inv.replay.begin(OpKind.COMPENSATE, f"undo-{entry.step.name}")
        try:
            run_step(inv, op, entry.undo, entry.args, entry.kwargs, retry=None, timeout=None)
        except NondeterminismError:
            raise
        except Exception as failed:  # noqa: BLE001 - a compensation out of retries ends the saga here
            skipped = [f"undo-{e.step.name}" for e in pending[index + 1 :]]
            stuck = CompensationFailed(entry.step.name, str(failed), skipped)
            end = inv.replay.begin(OpKind.END, "end")
            inv.commit(
                EventType.JOB_FAILED,
                end,
                error=ErrorInfo.of(stuck),
                detail={
                    "original_error": ErrorInfo.of(error).model_dump() if error else None,
                    "compensated": done,
                },
            )
            return
        done.append(op.name)
    end = inv.replay.begin(OpKind.END, "end")
    detail: dict[str, Any] = {"compensated": done}
    if terminal is EventType.JOB_CANCELLED:
        detail["requested_at"] = inv.snapshot.job.get("cancel_requested_at")
        inv.commit(EventType.JOB_CANCELLED, end, detail=detail, error=ErrorInfo.of(error) if error else None)
    else:
        inv.commit(EventType.JOB_FAILED, end, detail=detail, error=ErrorInfo.of(error) if error else None)
