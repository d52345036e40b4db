"""The seeded plan of a chaos run: which jobs, how their signals are sent, when processes die.

What a job walks off the happy path (``Workload``) is part of its plan: its order's fields (read by
the job function), the odd value its input or its ``memo`` signal tries first, and its cancel.

Everything random in a run is drawn from ``random.Random`` sources derived from the run's seed:
the jobs and their signals here, the chaos actions in the driver, and each worker process's fault
stream and crash plan. So a seed names one plan; what the processes' timing makes of it varies
from run to run, which is why a run checks invariants rather than comparing against a recording.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from aetheris._engine.faults import CRASH_POINTS
from aetheris_infra.chaos.app import MEMO, SIGNALS, ChaosOrder, Variant
from aetheris_infra.chaos.faults import CrashPlan
from aetheris_infra.chaos.workload import IN_JOB_MOMENTS, CancelMoment, OddKind, Workload, odd_value

# How many times a point is reached before the armed worker dies, by point: the points on every
# operation are reached far more often than the ones on tool calls or signal ingestion.
CRASH_AFTER: dict[str, tuple[int, int]] = {
    "before_effect": (2, 14),
    "after_effect": (2, 14),
    "after_record": (2, 14),
    "before_commit": (4, 30),
    "after_commit": (4, 30),
    "before_enqueue": (4, 26),
    "after_inbox_write": (1, 6),
    "before_retention": (1, 6),  # reached once per job a worker ends
}
DEFAULT_CRASH_AFTER = (2, 14)  # a point this table does not know yet (the engine grew one)
NAPS_MS = (0, 0, 50, 200, 1200)
LONG_NAPS_MS = (3_000, 6_000, 9_000)  # several sweep periods


@dataclass(frozen=True)
class SignalPlan:
    name: str
    signal_id: str
    payload: dict[str, Any]
    delay_s: float  # after the start; 0 means at once, before the job can have reached its wait
    copies: int  # sends of the same signal id (duplicates)
    copy_gap_s: float
    # An odd payload the first send tries: if the runtime refuses it, the send falls back to
    # ``payload`` under ``signal_id`` + "-plain"; if it accepts it, the job must get it exactly.
    probe: OddKind | None = None

    @property
    def early(self) -> bool:
        return self.delay_s == 0


@dataclass(frozen=True)
class CancelPlan:
    """When the job is cancelled: by the driver (``delay_s`` after the start, or as it parks), or
    by its own tool (``last_step``, ``compensating``: see ``ChaosOrder.cancel_in``)."""

    moment: CancelMoment
    delay_s: float = 0.0

    @property
    def by_driver(self) -> bool:
        return self.moment not in IN_JOB_MOMENTS or self.delay_s > 0


@dataclass(frozen=True)
class JobPlan:
    index: int
    order: ChaosOrder
    idempotency_key: str
    signals: tuple[SignalPlan, ...]
    job_id: str = field(default="", compare=False)
    cancel: CancelPlan | None = None
    # The odd value ``order.note`` tries first; refused, the job is started with ``note=None``.
    input_probe: OddKind | None = None

    @property
    def variant(self) -> Variant:
        return self.order.variant

    @property
    def reordered(self) -> bool:
        """``ship`` is due before ``approve``, the order the job waits for them in."""
        by_name = {s.name: s for s in self.signals}
        return by_name["ship"].delay_s < by_name["approve"].delay_s


def plan_jobs(
    seed: int, jobs: int, workload: Workload | None = None, each: tuple[str, ...] = ()
) -> list[JobPlan]:
    """The jobs of a run. The happy workload draws exactly what it drew before issue 11.

    With ``each`` (workload element names, or several joined by ``+``), job ``i`` walks only
    ``each[i % len(each)]``, on every path it can: one run tells apart which elements fail.
    """
    default = workload or Workload()
    rng = random.Random(f"jobs-{seed}")
    paths = random.Random(f"paths-{seed}")  # a stream of its own: the happy draws stay the same
    runs = random.Random(f"runs-{seed}")  # and one for continued runs: the other draws stay the same
    plans = []
    for index in range(jobs):
        roll = rng.random()
        variant: Variant = "reject" if roll < 0.15 else "flaky" if roll < 0.3 else "ok"
        order = ChaosOrder(
            n=index,
            variant=variant,
            work_steps=rng.randint(1, 3),
            nap_ms=rng.choice(NAPS_MS),
        )
        workload = Workload.focused(tuple(each[index % len(each)].split("+"))) if each else default
        order, cancel, input_probe, memo_probe = _off_the_path(order, workload, paths)
        if runs.random() < workload.continued_runs:
            order = order.model_copy(update={"runs": runs.choice((2, 3))})
        signals = []
        names = (*SIGNALS, MEMO) if order.memo else SIGNALS
        for name in names:
            early = rng.random() < 0.35
            payload: dict[str, Any] = {"n": index, "signal": name}
            if name == "approve":
                payload["approved"] = variant != "reject"
            elif name == MEMO:
                payload["plain"] = True
            else:
                payload["carrier"] = rng.choice(("ups", "dhl", "post"))
            signals.append(
                SignalPlan(
                    name=name,
                    signal_id=f"sig-{seed}-{index}-{name}-{rng.getrandbits(32):08x}",
                    payload=payload,
                    delay_s=0.0 if early else round(rng.uniform(0.3, 4.0), 3),
                    copies=rng.choice((1, 2, 2, 3)),
                    copy_gap_s=round(rng.uniform(0.0, 2.0), 3),
                    probe=memo_probe if name == MEMO else None,
                )
            )
        plans.append(JobPlan(index, order, f"chaos-{seed}-{index}", tuple(signals), "", cancel, input_probe))
    return plans


def _off_the_path(
    order: ChaosOrder, w: Workload, rng: random.Random
) -> tuple[ChaosOrder, CancelPlan | None, OddKind | None, OddKind | None]:
    """The order's switches, its cancel and its odd values, drawn from the workload's shares."""

    def draw(share: float) -> bool:
        return rng.random() < share

    changes: dict[str, Any] = {
        "saga_values": draw(w.saga_values),
        "refund": draw(w.refunds),
        "fanout": draw(w.reordered_calls),
        "bare_except": draw(w.bare_except),
    }
    if order.variant != "reject":
        if draw(w.big_tool_errors):
            changes["big_error"] = "tool"
        elif draw(w.big_step_errors):
            changes["big_error"] = "step"
    if draw(w.long_timers):
        changes["nap_ms"] = rng.choice(LONG_NAPS_MS)
    cancel = None
    if w.cancel_moments and draw(w.cancels):
        moment = rng.choice(w.cancel_moments)
        delay = round(rng.uniform(0.2, 8.0), 3) if moment == "random" else 0.0
        if moment in IN_JOB_MOMENTS:
            changes["cancel_in"] = moment
            if moment == "compensating" and order.variant != "reject":
                delay = round(rng.uniform(0.5, 6.0), 3)  # the first cancel, so that a saga runs
        cancel = CancelPlan(moment, delay)
    input_probe = rng.choice(w.input_kinds) if w.input_kinds and draw(w.odd_inputs) else None
    memo_probe = rng.choice(w.signal_kinds) if w.signal_kinds and draw(w.odd_signals) else None
    if input_probe is not None:
        changes["note"] = odd_value(input_probe)
    changes["memo"] = memo_probe is not None
    if draw(w.branch_maps):
        changes["branches"] = rng.choice((2, 3, 4))
    changes["child"] = draw(w.child_jobs)
    changes["link"] = draw(w.callbacks)
    return order.model_copy(update=changes), cancel, input_probe, memo_probe


class CrashSchedule:
    """The crash plan of each spawned worker: the named points in a seeded round robin."""

    def __init__(self, seed: int, armed_share: float = 0.85) -> None:
        self._random = random.Random(f"crashes-{seed}")
        self._points = list(CRASH_POINTS)
        self._random.shuffle(self._points)
        self._next = 0
        self.armed_share = armed_share

    def next(self) -> CrashPlan:
        if self._random.random() >= self.armed_share:
            return CrashPlan()
        point = self._points[self._next % len(self._points)]
        self._next += 1
        low, high = CRASH_AFTER.get(point, DEFAULT_CRASH_AFTER)
        return CrashPlan(point, self._random.randint(low, high))  # type: ignore[arg-type]
