"""Running a step's body: on its own thread, under the step's time limit, sync or ``async def``.

The body's outcome is its return value or whatever it raised — any ``BaseException``, so that an
``asyncio.CancelledError`` or a ``SystemExit`` from user code is the step's error, handled by its
retry policy, and never kills the worker. Only the runtime's own control flow passes through
(``RUNTIME_FLOW``: the lease was lost, a store call failed, a simulated crash).

An ``async def`` body (or one that returns an awaitable) is awaited on an event loop of the step's
own thread, under the same time limit. A body that runs past the limit is abandoned: its thread is
left behind (Python cannot kill it), its StepContext is closed, so any tool call it still makes is
refused.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import CodeType, FunctionType
from typing import TYPE_CHECKING, Any

from aetheris import _log_context
from aetheris._engine import guard
from aetheris._engine.faults import SimulatedCrash
from aetheris._engine.store_io import StoreFailure
from aetheris.errors import LeaseLost, StepTimeout

if TYPE_CHECKING:
    from aetheris._engine.step_context import StepContext

RUNTIME_FLOW: tuple[type[BaseException], ...] = (LeaseLost, StoreFailure, SimulatedCrash)


class _Outcome:
    def __init__(self) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.warnings: list[str] = []


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def call_within(
    strict: bool,
    limit: timedelta,
    fn: Callable[..., Any],
    sctx: StepContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """Run ``fn(sctx, *args, **kwargs)`` on its own thread and wait at most ``limit`` (real time:
    it measures the body). Returns its value or raises what it raised."""
    outcome = _Outcome()

    def body() -> None:
        try:
            with guard.watching_step(strict) as watch:
                outcome.warnings = watch.warnings
                value = fn(sctx, *args, **kwargs)
                if inspect.isawaitable(value):
                    value = asyncio.run(_awaited(value))
                outcome.value = value
        except BaseException as error:  # noqa: BLE001 - carried to the caller's thread and re-raised there
            outcome.error = error
        finally:
            sctx.close()

    # The body's lines (sctx.logger, the engine's tool lines) carry the tick's keys on its thread too.
    target = _log_context.in_this_context(body)
    thread = threading.Thread(target=target, name=f"step-{sctx.name}", daemon=True)
    thread.start()
    thread.join(limit.total_seconds())
    if thread.is_alive():
        sctx.close(abandoned=True)
        raise StepTimeout(sctx.name, limit.total_seconds())
    sctx.warnings.extend(outcome.warnings[:MAX_WARNINGS])
    if outcome.error is not None:
        raise outcome.error
    return outcome.value


# A step that opens thousands of untracked connections must not make its outcome too big to store.
MAX_WARNINGS = 20


def refuse_unrunnable(fn: Callable[..., Any], what: str) -> None:
    """A generator cannot be a step or a job: its body would run outside the step (lazily, later)."""
    target = fn.func if hasattr(fn, "func") else fn  # functools.partial
    # A plain function's verdict is its code's (the generator flags live there), and every replayed
    # step asks again: remembered per code object (shared by all closures of one ``def``/lambda).
    code = target.__code__ if target.__class__ is FunctionType else None
    if code is not None and code in _RUNNABLE:
        return
    if inspect.isgeneratorfunction(target) or inspect.isasyncgenfunction(target):
        from aetheris.errors import InvalidStep

        raise InvalidStep(
            f"{what} {getattr(target, '__qualname__', target)!r} is a generator function; a step's body "
            f"must return its result (return a list instead of yielding)"
        )
    if code is not None:
        if len(_RUNNABLE) >= _RUNNABLE_MAX:
            _RUNNABLE.clear()  # bounded (code made at run time: exec, generated functions)
        _RUNNABLE.add(code)


# The code of step functions found runnable (not generators).
_RUNNABLE: set[CodeType] = set()
_RUNNABLE_MAX = 4096
