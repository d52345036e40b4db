"""The job's end as a durable operation: ``JobCompleted`` with the output, ``JobFailed`` with the
error, or ``JobCancelled``. It is an operation like any other, so a cancel that arrives before it
is committed stops the job there (with its compensations) instead of completing it.

An output that does not fit the job's return type, cannot be stored or read back ends the job
``FAILED`` with that error, never retried.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from aetheris._engine.come_back import ComeBack
from aetheris._engine.history import OpRecord
from aetheris._engine.operations.base import Operation, OperationHost
from aetheris.errors import ErrorInfo
from aetheris.events import Event, EventType, OpKind

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


class EndOp(Operation[Event]):
    kind = OpKind.END

    def __init__(
        self,
        record: OpRecord,
        terminal: EventType,
        *,
        output: Any = None,
        error: BaseException | ErrorInfo | None = None,
        detail: dict[str, Any] | None = None,
        abortable: bool = True,
    ) -> None:
        super().__init__(record)
        self.terminal, self.output, self.error, self.detail = terminal, output, error, detail
        self.abortable = abortable

    def replayed(self, outcome: Event, host: OperationHost) -> Event:
        return outcome  # only the replay-only host gets here: a worker never ticks a finished job

    def execute(self, inv: Invocation) -> NoReturn:
        terminal, result, error = self.terminal, None, self.error
        if terminal is EventType.JOB_COMPLETED:
            try:
                result = inv.recorder.value(self.output, inv.definition.output, "job result")
            except Exception as invalid:  # noqa: BLE001 - an output that cannot be recorded fails the job
                terminal, error = EventType.JOB_FAILED, invalid
        info = error if isinstance(error, ErrorInfo) or error is None else inv.recorder.error(error)
        event = inv.commit(terminal, self.record, result=result, error=info, detail=self.detail)
        inv.suspend(ComeBack.after_commit(event, inv.clock.now()))
