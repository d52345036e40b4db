"""``StepContext``: the only door from a step to the outside world.

Tool calls go through the effect ledger (claim → call → record) under a stable idempotency key;
``now``/``uuid``/``random`` are recorded once per step position, so every attempt sees the same.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from aetheris._engine import guard
from aetheris._engine.effects import run_tool
from aetheris._engine.store_io import runtime_io
from aetheris._store import schema
from aetheris._store.ledger import EffectRef
from aetheris.errors import LeaseLost
from aetheris.policy import EffectSemantics, RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.history import OpRecord
    from aetheris._engine.invocation import Invocation

T = TypeVar("T")
_NAME = re.compile(r"^[A-Za-z0-9_.\-/]{1,100}$")


def check_name(kind: str, name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"{kind} name {name!r} must be 1-100 characters of letters, digits and _ . - /")
    return name


class StepContext:
    def __init__(self, invocation: Invocation, op: OpRecord, attempt: int) -> None:
        self._inv = invocation
        self.job_id = invocation.job_id
        self.step_id = op.step_id
        self.name = op.name
        self.attempt = attempt
        self._calls: Counter[str] = Counter()
        self.abandoned = False  # set when the step timed out: it may no longer touch the world
        self.warnings: list[str] = []  # effects that bypassed sctx.tool (reported in the trace)

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
        if self.abandoned:
            raise LeaseLost(self.job_id, f"step {self.name} timed out; its tool call {name!r} is refused")
        ref = self._next_ref(check_name("tool", name))
        with guard.suspended():  # the tool's own connections are the recorded effect
            result: T = run_tool(self._inv, ref, fn, args, kwargs, semantics, retry)
        return result

    def now(self) -> datetime:
        return datetime.fromisoformat(self._value("$now", lambda: self._inv.clock.now().isoformat()))

    def uuid(self) -> str:
        return str(self._value("$uuid", self._inv.ids.uuid))

    def random(self) -> float:
        return float(self._value("$random", self._inv.ids.random))

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
        ref = self._next_ref(kind)
        with guard.suspended(), runtime_io():
            kept = self._inv.services.ledger.value_once(self.job_id, ref.sk, json.dumps(make()))
        return json.loads(kept)
