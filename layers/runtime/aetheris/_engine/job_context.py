"""``JobContext``: what orchestration code sees. Every method is a durable operation or a read.

Each operation first looks up its recorded outcome (replay) and returns it without calling user
code; only the first operation with no outcome runs live, through the invocation, which commits
its outcome and unwinds the job function with ``Suspend``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from aetheris._engine import guard, parking
from aetheris._engine.history import OpRecord
from aetheris._engine.saga import Compensation
from aetheris._engine.step_context import check_name
from aetheris.events import OpKind
from aetheris.policy import RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation

T = TypeVar("T")


class JobContext:
    def __init__(self, invocation: Invocation) -> None:
        self._inv = invocation

    @property
    def job_id(self) -> str:
        return self._inv.job_id

    @property
    def attempt(self) -> int:
        """Attempt number of the operation this invocation advances (1 on the first try)."""
        return self._inv.attempt

    @property
    def is_replaying(self) -> bool:
        """True while the job function is re-running operations that already have an outcome."""
        return self._inv.replay.is_replaying

    def step(
        self,
        fn: Callable[..., T],
        *args: Any,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | None = None,
        compensate: Callable[..., Any] | None = None,
        **kwargs: Any,
    ) -> T:
        """Run ``fn(step_context, *args, **kwargs)`` as one durable step and return its recorded result.

        ``retry`` (default ``RetryPolicy()``) schedules further attempts as separate invocations;
        ``timeout`` abandons an attempt that runs longer (default ``Settings.step_timeout``);
        ``compensate(step_context, *args, **kwargs)`` undoes the step if the job later fails or is
        cancelled (saga), run as its own durable step.
        """
        with guard.suspended():
            op: OpRecord = self._inv.replay.begin(OpKind.STEP, name or fn.__name__)
            result: T = self._inv.run_step(op, fn, args, kwargs, retry, timeout)
            if compensate is not None:
                self._inv.compensations.append(Compensation(op, compensate, args, kwargs))
            return result

    def wait_for_signal(self, name: str, timeout: timedelta | None = None) -> Any:
        """Park the job until signal ``name`` arrives and return its payload.

        A signal that arrived before the wait is not lost: waits consume signals of their name in
        arrival order, one each. With ``timeout``, raises ``WaitTimeout`` (catchable) when it passes.
        """
        with guard.suspended():
            op = self._inv.replay.begin(OpKind.WAIT, check_name("signal", name))
            return parking.wait_for_signal(self._inv, op, name, timeout)

    def sleep(self, duration: timedelta) -> None:
        """A durable timer: the job holds no lease or Lambda while it sleeps, for any duration."""
        with guard.suspended():
            op = self._inv.replay.begin(OpKind.SLEEP, "sleep")
            parking.sleep(self._inv, op, duration)

    def now(self) -> datetime:
        return datetime.fromisoformat(
            self._inv.replay.value("now", lambda: self._inv.clock.now().isoformat())
        )

    def uuid(self) -> str:
        return str(self._inv.replay.value("uuid", self._inv.ids.uuid))

    def random(self) -> float:
        return float(self._inv.replay.value("random", self._inv.ids.random))
