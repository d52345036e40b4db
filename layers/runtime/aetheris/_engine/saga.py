"""Compensation (saga): when a job fails terminally or is cancelled, undo its committed steps.

Every step committed with ``compensate=`` registers its undo function as the job function replays.
On an unhandled error (or a stop: a cancel, an operation that cannot be run) the undo functions run
in reverse order, each as its own durable operation — with its own retries and effect ledger, so a
compensation never runs twice — with the job ``COMPENSATING``; a cancel that arrives meanwhile does
not interrupt them. Then the job ends ``FAILED`` with its original error, or ``CANCELLED`` (also
when a cancel came mid-saga; the original error is kept in the end's detail). A compensation that
exhausts its retries ends the job ``FAILED`` with ``CompensationFailed`` naming the step and the
compensations that did not run: visible to an operator, never dropped silently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn

from aetheris._engine.history import OpRecord
from aetheris._engine.operations.end import EndOp
from aetheris._engine.operations.step import CompensationOp
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


def compensate_then_end(
    inv: Invocation, cancelled: bool, error: BaseException | ErrorInfo | None
) -> NoReturn:
    """Run the pending compensations (one per invocation), then commit the end."""
    pending = list(reversed(inv.compensations))
    done: list[str] = []
    original = _info(error)
    for index, entry in enumerate(pending):
        record = inv.replay.begin(OpKind.COMPENSATE, f"undo-{entry.step.name}")
        try:
            CompensationOp(record, entry.undo, entry.args, entry.kwargs).run(inv)
        except NondeterminismError:
            raise
        except Exception as failed:  # noqa: BLE001 - a compensation out of retries ends the saga here
            skipped = [f"undo-{e.step.name}" for e in pending[index + 1 :]]
            stuck = CompensationFailed(entry.step.name, str(failed), skipped)
            failed_detail = {
                "original_error": original.model_dump() if original else None,
                "compensated": done,
            }
            EndOp(_end(inv), EventType.JOB_FAILED, error=stuck, detail=failed_detail, abortable=False).run(
                inv
            )
        done.append(record.name)
    detail: dict[str, Any] = {"compensated": done}
    if cancelled or inv.cancel_requested_at:
        detail["requested_at"] = inv.cancel_requested_at
        if original is not None:
            detail["original_error"] = original.model_dump()
        EndOp(_end(inv), EventType.JOB_CANCELLED, detail=detail, abortable=False).run(inv)
    EndOp(_end(inv), EventType.JOB_FAILED, error=original, detail=detail, abortable=False).run(inv)
    raise AssertionError("unreachable")  # pragma: no cover - an operation that runs always suspends


def _end(inv: Invocation) -> OpRecord:
    return inv.replay.begin(OpKind.END, "end")


def _info(error: BaseException | ErrorInfo | None) -> ErrorInfo | None:
    if error is None or isinstance(error, ErrorInfo):
        return error
    return ErrorInfo.of(error)
