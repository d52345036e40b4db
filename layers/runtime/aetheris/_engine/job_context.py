"""``JobContext``: what orchestration code sees. Every method is a durable operation or a read.

Each method builds the operation's executor (``operations/``) for the next position of the replay
cursor and runs it: a recorded outcome is returned without calling user code; the first operation
with no outcome runs live, commits, and ends the invocation with ``Suspend``. Any control flow an
operation raises halts the invocation (``Invocation.halt``), so it is raised again by every later
operation even if the job function caught it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from aetheris import callbacks
from aetheris._engine import guard
from aetheris._engine.body import refuse_unrunnable
from aetheris._engine.control import Abort
from aetheris._engine.fanout_rule import FanOutSpec
from aetheris._engine.faults import SimulatedCrash
from aetheris._engine.operations.base import Operation
from aetheris._engine.operations.child import ChildOp
from aetheris._engine.operations.continue_as_new import ContinueOp
from aetheris._engine.operations.fanout import Branch, FanOutOp
from aetheris._engine.operations.park import SleepOp, WaitOp
from aetheris._engine.operations.step import StepOp
from aetheris._engine.saga import Compensation
from aetheris._engine.step_context import check_name
from aetheris._engine.store_io import StoreFailure
from aetheris._observability import ReplaySafeLogger
from aetheris.errors import ContinueAsNewError, LeaseLost, NondeterminismError, Suspend
from aetheris.events import OpKind
from aetheris.fanout import BatchResult, Completion, CompletionReason
from aetheris.policy import RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.operations.base import OperationHost

T = TypeVar("T")
# What ends an invocation, whatever the job function does about it.
_CONTROL = (Suspend, Abort, LeaseLost, StoreFailure, SimulatedCrash, NondeterminismError)


def step_name(fn: Callable[..., Any], position: int) -> str:
    """A step's default name: its function's, or — for a lambda or a callable without a usable
    name — one made from its position, stable across replays (two lambdas in a row stay distinct)."""
    name = getattr(fn, "__name__", None) or getattr(getattr(fn, "func", None), "__name__", None)
    if isinstance(name, str) and _usable_name(name):
        return name
    return f"step-{position}"


@lru_cache(maxsize=4096)
def _usable_name(name: str) -> bool:
    """Can a function's name be a step's? (Asked by every replayed step: remembered per name.)"""
    if name == "<lambda>":
        return False
    try:
        check_name("step", name)
    except ValueError:
        return False
    return True


_JOB_LOG = logging.getLogger("aetheris.job")


class JobContext:
    def __init__(self, host: OperationHost) -> None:
        self._host = host
        # Replay-safe: a line is written once, when the code that logs it runs live, not on replay.
        self.logger = ReplaySafeLogger(_JOB_LOG, lambda: host.replay.is_replaying, job_id=host.job_id)

    @property
    def job_id(self) -> str:
        return self._host.job_id

    @property
    def attempt(self) -> int:
        """Attempt number of the operation this invocation advances (1 on the first try)."""
        return int(getattr(self._host, "attempt", 1))

    @property
    def is_replaying(self) -> bool:
        """True while the job function is re-running operations that already have an outcome."""
        return self._host.replay.is_replaying

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
        cancelled (saga), run as its own durable step. ``fn`` may be an ``async def``.
        """
        with guard.suspended():
            host = self._host.enter()
            refuse_unrunnable(fn, "step")
            record = host.replay.begin(OpKind.STEP, name or step_name(fn, host.replay.position))
            result: T = self._run(StepOp(record, fn, args, kwargs, retry, timeout))
            if compensate is not None:
                host.compensations.append(Compensation(record, compensate, args, kwargs))
            return result

    def map(
        self,
        fn: Callable[..., T],
        items: Iterable[Any],
        max_concurrency: int | None = None,
        completion: Completion | None = None,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | None = None,
        compensate: Callable[..., Any] | None = None,
    ) -> Any:
        """Run ``fn(step_context, item)`` for every item, each as its own durable step on its own
        invocation, concurrently (at most ``max_concurrency`` at a time).

        Returns the results in input order; the first branch to fail for good fails the whole (its
        error is raised, branches not started are never run). With ``completion=`` returns a
        ``BatchResult`` instead, or raises ``FanOutFailed`` when the rule is breached. ``retry``
        and ``timeout`` apply to each branch; ``compensate(step_context, item)`` undoes a branch
        that succeeded if the job later fails or is cancelled.
        """
        listed = list(items)
        label = name or step_name(fn, self._host.replay.position)
        branches = [Branch(fn, (item,), compensate) for item in listed]
        return self._fan_out(
            label, [label] * len(listed), branches, max_concurrency, completion, retry, timeout
        )

    def parallel(
        self,
        branches: Sequence[Callable[..., Any]],
        max_concurrency: int | None = None,
        completion: Completion | None = None,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        timeout: timedelta | None = None,
    ) -> Any:
        """Run each ``branch(step_context)`` as its own durable step, concurrently; see ``map``.

        Branches are callables taking the step context: ``lambda sctx: search(sctx, "a")`` or
        ``functools.partial(search, query="a")``.
        """
        listed = list(branches)
        names = [step_name(branch, b) for b, branch in enumerate(listed)]
        label = name or "parallel"
        bodies = [Branch(branch, ()) for branch in listed]
        return self._fan_out(label, names, bodies, max_concurrency, completion, retry, timeout)

    def _fan_out(
        self,
        label: str,
        names: list[str],
        branches: list[Branch],
        max_concurrency: int | None,
        completion: Completion | None,
        retry: RetryPolicy | None,
        timeout: timedelta | None,
    ) -> Any:
        with guard.suspended():
            host = self._host.enter()
            spec = _fan_out_spec(label, names, max_concurrency, completion)
            for branch in branches:
                refuse_unrunnable(branch.fn, "fan-out branch")
            if not branches:  # nothing to run: no operation, the same on every replay
                empty = BatchResult(items=[], reason=CompletionReason.ALL_COMPLETED)
                return empty if completion is not None else []
            record = host.replay.begin(OpKind.FANOUT, spec.name)
            return self._run(FanOutOp(record, spec, branches, retry, timeout))

    def child(self, job_type: str, input: Any = None, *, name: str | None = None) -> Any:
        """Start a child job (a sub-agent) of ``job_type`` with ``input``, park until it ends, and
        return its result — or raise ``ChildJobFailed`` (catchable) if it failed or was cancelled.

        The child's id derives from this job's id and the call's position, so it is started once
        whatever happens to this job's workers; it belongs to this job's tenant. Cancelling this
        job while it waits asks the child to cancel too (it is not waited for).
        """
        with guard.suspended():
            host = self._host.enter()
            label = check_name("child", name or f"child-{job_type}"[:100])
            record = host.replay.begin(OpKind.CHILD, label)
            return self._run(ChildOp(record, job_type, input))

    def wait_for_signal(self, name: str, timeout: timedelta | None = None) -> Any:
        """Park the job until signal ``name`` arrives and return its payload.

        A signal that arrived before the wait is not lost: waits consume signals of their name in
        arrival order, one each. With ``timeout``, raises ``WaitTimeout`` (catchable) when it passes.
        """
        with guard.suspended():
            host = self._host.enter()
            record = host.replay.begin(OpKind.WAIT, check_name("signal", name))
            return self._run(WaitOp(record, name, timeout))

    def callback(self, name: str, timeout: timedelta) -> callbacks.Callback:
        """A scoped callback: ``.token`` (and ``.url``, an approval page) lets whoever holds it answer
        this one wait of this job, with no other credential, until ``timeout`` has passed.

        Hand the token out in a step (an e-mail, a webhook registration), then ``.wait()`` parks
        the job until it is answered: it returns the payload of ``POST /callbacks/succeed`` or
        raises ``CallbackFailed`` (``POST /callbacks/fail``) or ``WaitTimeout``. Recorded like
        ``ctx.now()``: replay and a rerun tick return the same callback (see ``aetheris.callbacks``).
        """
        with guard.suspended():
            host = self._host.enter()
            check_name("callback", name)
            made = self._value("callback", lambda: callbacks.new_wait(host.replay, name, timeout))
            expires_at = datetime.fromisoformat(made["expires_at"])
            try:
                token, url = callbacks.issue(host, made["wait"], name, expires_at)
            except callbacks.CallbackKeysUnavailable as unavailable:
                failure = StoreFailure(unavailable)  # the tick is retried; the job never sees it
                host.halt(failure)
                raise failure from None
            signal = callbacks.SIGNAL_PREFIX + made["wait"]
            park = lambda: self._park(name, signal, expires_at)  # noqa: E731 - cb.wait() parks here
            return callbacks.Callback(name, token, url, expires_at, park)

    def continue_as_new(self, state: Any) -> NoReturn:
        """End this run and continue the same job on a fresh log, with ``state`` as its input.

        The job keeps its id (signals, cancel and ``GET /jobs/{id}`` keep working); its next run
        replays the job function from the top with ``state`` — validated by the job's input model —
        and reads only its own events, so a job that runs forever stays O(its current run). Signals
        consumed so far stay consumed; signals not consumed yet wait for the next run. Never returns
        (like a ``return``, code after it does not run); a state the input model rejects raises
        ``ContinueAsNewError``, which fails the job unless caught.
        """
        if guard.in_step_body():
            raise ContinueAsNewError(
                self._host.job_id,
                "called inside a step body: call it from the job function, after the step returns",
            )
        with guard.suspended():
            host = self._host.enter()
            self._run(ContinueOp(host.replay.begin(OpKind.CONTINUE, "continue"), state))
        raise AssertionError("unreachable")  # pragma: no cover - the operation always suspends

    def sleep(self, duration: timedelta) -> None:
        """A durable timer: the job holds no lease or Lambda while it sleeps, for any duration."""
        with guard.suspended():
            host = self._host.enter()
            self._run(SleepOp(host.replay.begin(OpKind.SLEEP, "sleep"), duration))

    def now(self) -> datetime:
        return datetime.fromisoformat(self._value("now", lambda: self._clock_now().isoformat()))

    def uuid(self) -> str:
        return str(self._value("uuid", lambda: self._ids().uuid()))

    def random(self) -> float:
        return float(self._value("random", lambda: self._ids().random()))

    # -- internals ------------------------------------------------------------------------------

    def _run(self, op: Operation[T]) -> T:
        try:
            return op.run(self._host)
        except _CONTROL as control:
            self._host.halt(control)
            raise

    def _park(self, name: str, signal: str, deadline: datetime) -> Any:
        """The wait of a callback: for its own signal, until its expiry."""
        with guard.suspended():
            host = self._host.enter()
            return self._run(WaitOp(host.replay.begin(OpKind.WAIT, name), signal, None, deadline))

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        host = self._host.enter()
        try:
            return host.replay.value(kind, make)
        except _CONTROL as control:
            host.halt(control)
            raise

    def _clock_now(self) -> datetime:
        now: datetime = self._host.live_clock().now()
        return now

    def _ids(self) -> Any:
        return self._host.live_ids()


def _fan_out_spec(
    label: str, names: list[str], max_concurrency: int | None, completion: Completion | None
) -> FanOutSpec:
    """The fan-out as it will be recorded; what cannot work is refused here, clearly."""
    check_name("fan-out", label)
    if len(label) > 90:
        raise ValueError(f"fan-out name {label!r} must be at most 90 characters")
    if max_concurrency is not None and (isinstance(max_concurrency, bool) or max_concurrency < 1):
        raise ValueError(f"max_concurrency must be a whole number of at least 1, not {max_concurrency!r}")
    if completion is not None and not isinstance(completion, Completion):
        raise TypeError("completion must be an aetheris.Completion")
    if completion is not None and (completion.min_successful or 0) > len(names):
        raise ValueError(
            f"completion.min_successful is {completion.min_successful} "
            f"but there are only {len(names)} branches"
        )
    return FanOutSpec(label, tuple(names), max_concurrency, completion)
