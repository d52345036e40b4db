"""Control flow of one invocation that user code must not be able to swallow.

``Abort`` unwinds the job function when the log says it stopped at an operation (a cancel took
effect there, or the operation kept killing its ticks); the invocation then runs the saga and ends
the job. Like ``Suspend`` and ``LeaseLost`` it is a ``BaseException``; and once any of them has been
raised, every later durable operation of the invocation raises it again (``Invocation.enter``), so
a bare ``except:`` around ``ctx.step`` cannot let the job function go on to commit anything else.
"""

from __future__ import annotations

from aetheris.errors import ErrorInfo
from aetheris.events import EventType

# Events that end an operation without running it: the job stops at that operation.
ABORTS = (EventType.CANCEL_REQUESTED, EventType.OPERATION_ABORTED)


class Abort(BaseException):
    """The job stops at this operation: cancelled, or failed because the operation cannot be run."""

    def __init__(self, cancelled: bool, error: ErrorInfo | None) -> None:
        self.cancelled = cancelled
        self.error = error
        super().__init__("cancelled" if cancelled else f"aborted: {error.message if error else '?'}")
