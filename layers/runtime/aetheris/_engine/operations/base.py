"""The one shape of every durable operation.

    look up the recorded outcome → (the job stops here?) → execute live → record → return / suspend

``Operation.run`` is that sequence. A recorded outcome is returned (or its recorded error raised)
without calling user code. Without one, the host decides whether the operation may run live: the
worker's invocation lets it — unless the job must stop there (a cancel, or an operation that keeps
killing its ticks), in which case the stop itself is committed as the operation's outcome — and the
replay-only host (``replayer.py``) ends the replay. A live operation records its outcome through
the invocation and raises ``Suspend`` carrying when to come back; it never returns.

Calls go one way: context → operation → invocation (commit) → store. An operation holds no state
that the invocation reads afterwards. Modelled on the AWS durable execution SDK's
``operation/base.py`` (``check_result_status`` → ``execute``) and DBOS's ``invoke_step``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Protocol, TypeVar

from aetheris._engine.control import ABORTS, Abort
from aetheris._engine.history import OpRecord
from aetheris.errors import Suspend
from aetheris.events import Event, OpKind

if TYPE_CHECKING:
    from aetheris._clock import Clock, IdSource
    from aetheris._engine.invocation import Invocation
    from aetheris._engine.replay import Replay
    from aetheris._engine.saga import Compensation
    from aetheris._store.payloads import Payloads

T = TypeVar("T")


class OperationHost(Protocol):
    """What runs operations: a worker's invocation, or the replay-only host of ``replayer.py``."""

    job_id: str
    replay: Replay
    compensations: list[Compensation]

    @property
    def payloads(self) -> Payloads: ...

    def enter(self) -> OperationHost:
        """Called before every operation the job function asks for (raises once the tick is over)."""
        ...

    def live(self, op: Operation[Any]) -> Invocation:
        """The invocation to run ``op`` live with (or the stop committed in its place)."""
        ...

    def halt(self, control: BaseException) -> None:
        """Remember the control flow that ended the invocation (raised again by ``enter``)."""
        ...

    def live_clock(self) -> Clock:
        """The clock for a value recorded now (``ctx.now()``); replay-only hosts have none."""
        ...

    def live_ids(self) -> IdSource: ...


class Operation(ABC, Generic[T]):
    kind: ClassVar[OpKind]
    # False for the saga's own operations: a cancel that arrives mid-compensation does not stop them.
    abortable: bool = True

    def __init__(self, record: OpRecord) -> None:
        self.record = record

    @property
    def name(self) -> str:
        return self.record.name

    def run(self, host: OperationHost) -> T:
        outcome = self.record.outcome
        if outcome is not None:
            if outcome.type in ABORTS:
                raise Abort(cancelled=outcome.type is ABORTS[0], error=outcome.error)
            return self.replayed(outcome, host)
        live = host.live(self)
        try:
            self.execute(live)
        except Suspend as suspended:
            # Committed. A sticky job function stays parked here (``sticky.py``) and returns the
            # committed outcome in the job's next tick, exactly as that tick's replay would.
            resumed = live.stay(self, suspended)
        self.record = resumed.history.ops[self.record.index]
        settled = self.record.outcome
        assert settled is not None  # parked only on a commit that settles the operation
        return self.replayed(settled, resumed)

    def on_stop(self, inv: Invocation) -> None:
        """The job stops at this operation (a cancel, a crash loop): let go of what it started."""

    @abstractmethod
    def replayed(self, outcome: Event, host: OperationHost) -> T:
        """The recorded outcome as the job function sees it (a recorded error is raised)."""

    @abstractmethod
    def execute(self, inv: Invocation) -> NoReturn:
        """Run live, commit the outcome and raise ``Suspend``."""
