"""Which paths off the happy one a chaos run walks: every element is switchable, and seeded.

``Workload`` says, per element, the share of jobs that get it (0 turns it off). ``Workload.ci()``
is what ``tests/chaos`` runs (the elements today's engine passes), ``Workload.full()`` everything
(``bench/chaos.py --workload full``); ``with_elements`` turns single elements on or off by name
(``bench/chaos.py --enable last_step_cancels``). The elements:

* ``cancels``: the driver cancels a job at a moment drawn from ``cancel_moments`` — ``early``
  (right after the start), ``random`` (a uniform delay), ``parked`` (as soon as the journal shows
  the job parking on a signal or a timer) — and, inside the job, ``last_step`` (the last step's
  tool asks for the cancel while the step runs) and ``compensating`` (a compensation's tool asks
  for it while the saga runs: a second cancel, or the first one of a rejected order).
* ``saga_values``: the job function records ``ctx.uuid()`` and ``ctx.now()`` around its
  compensable steps (a cancel after recorded values must not look like a code change).
* ``refunds``: ``charge`` is compensable too (``payments.refund``): two compensations to run in order.
* ``big_tool_errors`` / ``big_step_errors``: the first attempt of ``work-0`` fails with a ~250 KB
  error message, raised by its tool or by the step itself; the retry succeeds.
* ``reordered_calls``: a ``fan-out`` step calls one tool per element of a set, in another order on
  each attempt; its first attempt fails after two calls.
* ``bare_except``: the job function has a bare ``except:`` around one ``ctx.step``.
* ``odd_signals`` / ``odd_inputs``: a ``memo`` signal payload / the job input's ``note`` is one of
  ``ODD_VALUES`` (deep, non-ASCII, too deep, too big, lone surrogates, NaN, huge numbers): the
  runtime must refuse it at once with a clear error, or keep it exactly (the job returns it).
* ``long_timers``: some sleeps last several sweep periods (every timer's due time is checked).
* ``branch_maps``: a ``quotes`` fan-out (``ctx.map``, 2-4 branches, at most 2 at a time), each
  branch calling one tool under its own key; cancels and crashes land in it like anywhere.
* ``child_jobs``: a child job (``ctx.child``) does one tool call; cancelling the order cancels it.
* ``callbacks``: a scoped callback (``ctx.callback``) whose token a step mails (the external ledger
  line carries it); the driver answers it through the callback path, duplicates included.
* ``continued_runs``: the order first continues as new 2-3 times (``ctx.continue_as_new``), each
  short run calling one tool, carrying a counter and the tools' results; signals sent meanwhile
  carry over to the run that waits for them.

On the engine of commit bcac789 (before issue 11's redesign; every element passes on the redesigned
engine, so ``ci()`` is now ``full()``), measured with
``bench/chaos.py --each ELEMENT ...`` (two jobs per element; ``--enable ELEMENT`` adds one to CI):

==========================  =====================================================================
element                     today
==========================  =====================================================================
last_step_cancels           FAILS: the job stays RUNNING for ever, its ticks dead-lettered (finding 4)
big_tool_errors             FAILS: stuck; the quote tool called 26-33 times under one key, the
                            repeats unexplained by any fault; ticks dead-lettered (finding 1)
big_step_errors             FAILS: stuck, ticks dead-lettered (finding 1)
reordered_calls             FAILS: recipients get another recipient's answer, two never served,
                            one tool called under two keys (finding 2)
bare_except                 FAILS: the job stops committing (stuck) once the swallowed suspension
                            hits (finding 3)
huge_int_inputs             FAILS: accepted, then the job fails reading its own input
                            ("number out of range"); an idempotent retry of the start raises
                            ValueError, so the driver never learns the job exists (finding 11)
nan_inf_inputs              FAILS: accepted, the job returns null for NaN / inf (finding 11)
parked_cancels              passed 2 of 2 jobs; finding 6 says a narrow window loses the cancel
compensating_cancels        passed 2 of 2 jobs
saga_values (+ cancels)     passed 2 of 2 jobs; finding 5 says a narrow window diverges
too_deep_signals / inputs   pass: refused at once (PydanticSerializationError / ValueError)
the ``ci()`` elements       pass (tests/chaos)
==========================  =====================================================================
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

CancelMoment = Literal["early", "random", "parked", "last_step", "compensating"]
CANCEL_MOMENTS: tuple[CancelMoment, ...] = ("early", "random", "parked", "last_step", "compensating")
IN_JOB_MOMENTS = ("last_step", "compensating")  # asked for by the job's own tool, while it runs

OddKind = Literal[
    "deep", "unicode", "too_deep", "huge_unicode", "lone_surrogate", "nan_inf", "big_numbers", "huge_int"
]
SIGNAL_KINDS: tuple[OddKind, ...] = ("deep", "unicode", "too_deep", "huge_unicode", "lone_surrogate")
INPUT_KINDS: tuple[OddKind, ...] = ("deep", "unicode", "too_deep", "nan_inf", "big_numbers", "huge_int")
UNICODE_SAMPLE = "naïve café — 日本語テキスト, עברית, العربية, 🎉🧪, e\u0301, zero\u200bwidth, \u0000nul"


def _nest(depth: int, leaf: Any) -> Any:
    value = leaf
    for level in range(depth):
        value = {f"ключ{level}": value} if level % 2 else [value, level]
    return value


def odd_value(kind: OddKind) -> Any:
    """The value of one odd kind (the same on every call)."""
    values: dict[str, Any] = {
        "deep": _nest(40, "дно 🕳"),
        "unicode": {"text": UNICODE_SAMPLE, "ключ": ["ü", "ß", "字"], "emoji🔑": "✓"},
        "too_deep": _nest(300, "too deep"),
        # ~270 KB of UTF-8, ~540 KB once JSON escapes it: past DynamoDB's item limit either way.
        "huge_unicode": {"text": "字" * 90_000},
        "lone_surrogate": {"text": "half a pair: \ud800 and \udfff"},
        "nan_inf": {"nan": math.nan, "inf": math.inf, "minus_inf": -math.inf, "overflow": float("1e400")},
        "big_numbers": {"big": 2**200, "negative": -(2**63), "tiny": 5e-324, "max": 1.7976931348623157e308},
        "huge_int": {"digits": 10**5000},
    }
    return values[kind]


@dataclass(frozen=True)
class Workload:
    cancels: float = 0.0
    cancel_moments: tuple[CancelMoment, ...] = CANCEL_MOMENTS
    saga_values: float = 0.0
    refunds: float = 0.0
    big_tool_errors: float = 0.0
    big_step_errors: float = 0.0
    reordered_calls: float = 0.0
    bare_except: float = 0.0
    odd_signals: float = 0.0
    signal_kinds: tuple[OddKind, ...] = SIGNAL_KINDS
    odd_inputs: float = 0.0
    input_kinds: tuple[OddKind, ...] = INPUT_KINDS
    long_timers: float = 0.0
    branch_maps: float = 0.0
    child_jobs: float = 0.0
    callbacks: float = 0.0
    continued_runs: float = 0.0

    @classmethod
    def happy(cls) -> Workload:
        """The workload before issue 11: no element off the happy path."""
        return cls()

    @classmethod
    def full(cls) -> Workload:
        """Every element, every cancel moment, every odd kind."""
        return cls(
            cancels=0.5,
            saga_values=0.3,
            refunds=0.5,
            big_tool_errors=0.06,
            big_step_errors=0.06,
            reordered_calls=0.15,
            bare_except=0.1,
            odd_signals=0.3,
            odd_inputs=0.3,
            long_timers=0.2,
            branch_maps=0.4,
            child_jobs=0.3,
            callbacks=0.3,
            continued_runs=0.3,
        )

    @classmethod
    def ci(cls) -> Workload:
        """What ``tests/chaos`` runs: every element of ``full()``. (On the engine before issue 11's
        redesign the table above failed; the redesign passes them all.)"""
        return cls.full()

    def with_elements(self, enable: tuple[str, ...] = (), disable: tuple[str, ...] = ()) -> Workload:
        """This workload with the named elements (``ELEMENTS``) turned on (at ``full()``'s share) or off."""
        workload = self
        full = Workload.full()
        for name in (*enable, *disable):
            if name not in ELEMENTS:
                raise ValueError(f"unknown workload element {name!r}; one of {', '.join(ELEMENTS)}")
        for name in enable:
            workload = ELEMENTS[name].turn(workload, full, on=True)
        for name in disable:
            workload = ELEMENTS[name].turn(workload, full, on=False)
        return workload

    @classmethod
    def focused(cls, names: tuple[str, ...]) -> Workload:
        """Only the named elements, each on every job it can be (share 1): one element's own run."""
        workload = cls.happy().with_elements(enable=names)
        shares: dict[str, Any] = {e.share: 1.0 for name, e in ELEMENTS.items() if name in names}
        if "big_tool_errors" in shares and "big_step_errors" in shares:
            shares["big_step_errors"] = 0.5  # a job gets one of the two
        return replace(workload, **shares)

    def enabled(self) -> list[str]:
        return [name for name, element in ELEMENTS.items() if element.is_on(self)]


@dataclass(frozen=True)
class _Element:
    """One switch: a share field, or one value of a tuple field (a cancel moment, an odd kind)."""

    share: str
    among: str | None = None  # the tuple field the value belongs to
    value: str | None = None

    def is_on(self, w: Workload) -> bool:
        if getattr(w, self.share) <= 0:
            return False
        return self.among is None or self.value in getattr(w, self.among)

    def turn(self, w: Workload, full: Workload, on: bool) -> Workload:
        changes: dict[str, Any] = {}
        if self.among is None:
            changes[self.share] = getattr(full, self.share) if on else 0.0
            return replace(w, **changes)
        values = tuple(v for v in getattr(w, self.among) if v != self.value)
        if on and getattr(w, self.share) <= 0:
            values = ()  # the element was off: its tuple held no choice of anyone's
        if on:
            values = tuple(v for v in getattr(full, self.among) if v in (*values, self.value))
            changes[self.share] = getattr(w, self.share) or getattr(full, self.share)
        changes[self.among] = values
        return replace(w, **changes)


_SHARES = [f.name for f in fields(Workload) if f.type in ("float", float)]
ELEMENTS: dict[str, _Element] = {
    **{f"{m}_cancels": _Element("cancels", "cancel_moments", m) for m in CANCEL_MOMENTS},
    **{f"{k}_signals": _Element("odd_signals", "signal_kinds", k) for k in SIGNAL_KINDS},
    **{f"{k}_inputs": _Element("odd_inputs", "input_kinds", k) for k in INPUT_KINDS},
    **{name: _Element(name) for name in _SHARES if name not in ("cancels", "odd_signals", "odd_inputs")},
}


def walks(plan: Any) -> list[str]:
    """The elements one job's plan (``JobPlan``) walks."""
    order, names = plan.order, []
    if plan.cancel is not None:
        names.append(f"{plan.cancel.moment}_cancels")
    for signal in plan.signals:
        if signal.probe:
            names.append(f"{signal.probe}_signals")
    if plan.input_probe:
        names.append(f"{plan.input_probe}_inputs")
    flags = {
        "saga_values": order.saga_values,
        "refunds": order.refund,
        "big_tool_errors": order.big_error == "tool",
        "big_step_errors": order.big_error == "step",
        "reordered_calls": order.fanout,
        "bare_except": order.bare_except,
        "long_timers": order.nap_ms >= 3000,
        "branch_maps": order.branches > 0,
        "child_jobs": order.child,
        "callbacks": order.link,
        "continued_runs": order.runs > 0,
    }
    return names + [name for name, on in flags.items() if on]
