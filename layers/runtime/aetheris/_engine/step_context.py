"""``StepContext``: the only door from a step to the outside world.

Tool calls go through the effect ledger (claim → call → record) under a stable idempotency key;
``now``/``uuid``/``random`` are recorded once per step position, so every attempt sees the same.
A ``StepContext`` is valid only while its step attempt runs: once the body has returned, raised or
timed out, every call on it is refused (``StepContextClosed``), so a context kept and used from
orchestration code can never record a call under a finished step.

``tool`` takes ``async def`` functions too: inside an ``async def`` step, ``await sctx.tool(...)``;
inside a plain step the coroutine is run to completion on the step's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aetheris import _log_context
from aetheris._clock import to_millis
from aetheris._engine import guard
from aetheris._engine.effects import ToolCall, run_tool, run_tool_async
from aetheris._engine.store_io import runtime_io
from aetheris._observability import ReplaySafeLogger
from aetheris._store import schema
from aetheris._store.ledger import EffectRef
from aetheris.errors import LeaseLost, StepContextClosed
from aetheris.policy import EffectSemantics, RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.history import OpRecord
    from aetheris._engine.invocation import Invocation
    from aetheris.budget import Budget

T = TypeVar("T")
_STEP_LOG = _log_context.logger("aetheris.step")
_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,100}$")


def check_name(kind: str, name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"{kind} name {name!r} must be 1-100 characters of letters, digits and _ . - /")
    return name


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(getattr(fn, "func", fn)) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object whose __call__ is async
    )


class StepContext:
    def __init__(self, invocation: Invocation, op: OpRecord, attempt: int) -> None:
        self._inv = invocation
        self.job_id = invocation.job_id
        self.step_id = op.step_id
        self.name = op.name
        self.attempt = attempt
        self._calls: Counter[str] = Counter()
        self.closed = False  # the attempt ended (returned, raised, timed out): no more calls
        self.abandoned = False  # it timed out: a call from its still-running body is refused
        self.warnings: list[str] = []  # effects that bypassed sctx.tool (reported in the trace)
        # The engine's lines while the step runs name it (the tick's keys, _log_context).
        _log_context.add(step=self.name, attempt=attempt)
        # A model call refused by a Budget(on_exceeded="wait"): the step parks, whatever the body did.
        self.budget_blocked: BaseException | None = None
        # A step body runs only live, so its lines are never replayed; they carry where they ran.
        self.logger = ReplaySafeLogger(
            _STEP_LOG,
            lambda: False,
            job_id=self.job_id,
            step=self.name,
            attempt=attempt,
            worker_id=invocation.lease.worker_id,
            fence=invocation.lease.fence,
        )

    @property
    def job_budget(self) -> Budget | None:
        """The job's ``Budget`` (per start, else ``@app.job(budget=...)``, raised by signals), if any."""
        return self._inv.budget

    def ledger_entries(self) -> list[dict[str, Any]]:
        """The job's effect-ledger entries as one consistent read sees them (values resolved): its
        current run's — a budget counts what this run spent (``ctx.continue_as_new``)."""
        services, base = self._inv.services, self._inv.history.base
        with runtime_io():
            items = services.ledger.list(self.job_id)
        current = [i for i in items if (schema.effect_position(str(i[schema.SK])) or 0) >= base]
        return [services.payloads.resolve(item) for item in current]

    def close(self, abandoned: bool = False) -> None:
        self.closed = True
        self.abandoned = self.abandoned or abandoned

    def idempotency_key(self, name: str) -> str:
        """The key the next ``tool(name, ...)`` call of this step will carry (a pure read)."""
        return schema.idempotency_key(self.job_id, self.step_id, check_name("tool", name), self._calls[name])

    def tool(
        self,
        name: str,
        fn: Callable[..., T],
        *args: Any,
        semantics: EffectSemantics = EffectSemantics.AT_LEAST_ONCE,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> T:
        """Call ``fn(*args, **kwargs)`` as a recorded side effect; a recorded call never runs again."""
        self._check_open(f"sctx.tool({name!r})")
        ref = self._next_ref(check_name("tool", name))
        call = ToolCall(ref, fn, args, kwargs, semantics, retry, self.attempt)
        if _is_async(fn):
            coroutine = self._async_tool(call)
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # a plain step: run the coroutine to completion here
                result: T = asyncio.run(coroutine)
                return result
            return coroutine  # type: ignore[return-value] # an async step awaits it
        with guard.suspended():  # the tool's own connections are the recorded effect
            done: T = run_tool(self._inv, call)
        return done

    async def _async_tool(self, call: ToolCall) -> Any:
        with guard.suspended():
            return await run_tool_async(self._inv, call)

    def now(self) -> datetime:
        return datetime.fromisoformat(self._value("$now", lambda: self._inv.clock.now().isoformat()))

    def uuid(self) -> str:
        return str(self._value("$uuid", self._inv.ids.uuid))

    def random(self) -> float:
        return float(self._value("$random", self._inv.ids.random))

    def _check_open(self, call: str) -> None:
        if self.abandoned:  # timed out: the attempt's outcome is written, it may not touch the world
            raise LeaseLost(self.job_id, f"step {self.name} timed out; its call {call} is refused")
        if self.closed:  # the attempt ended: nothing more is recorded under it
            raise StepContextClosed(self.name, call)

    def _next_ref(self, name: str) -> EffectRef:
        index = self._calls[name]
        self._calls[name] += 1
        return EffectRef(
            job_id=self.job_id,
            sk=schema.effect_sk(self.step_id, name, index),
            idempotency_key=schema.idempotency_key(self.job_id, self.step_id, name, index),
            name=name,
        )

    def _value(self, kind: str, make: Callable[[], Any]) -> Any:
        self._check_open(f"sctx.{kind[1:]}()")
        ref = self._next_ref(kind)
        with guard.suspended(), runtime_io():
            now_ms = to_millis(self._inv.clock.now())
            kept = self._inv.services.ledger.value_once(self.job_id, ref.sk, json.dumps(make()), now_ms)
        return json.loads(kept)
