"""The seeded plan of a chaos run: which jobs, how their signals are sent, when processes die.

Everything random in a run is drawn from ``random.Random`` sources derived from the run's seed:
the jobs and their signals here, the chaos actions in the driver, and each worker process's fault
stream and crash plan. So a seed names one plan; what the processes' timing makes of it varies
from run to run, which is why a run checks invariants rather than comparing against a recording.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from aetheris_infra.chaos.app import SIGNALS, ChaosOrder, Variant
from aetheris_infra.chaos.faults import CrashPlan

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


@dataclass(frozen=True)
class SignalPlan:
    name: str
    signal_id: str
    payload: dict[str, Any]
    delay_s: float  # after the start; 0 means at once, before the job can have reached its wait
    copies: int  # sends of the same signal id (duplicates)
    copy_gap_s: float

    @property
    def early(self) -> bool:
        return self.delay_s == 0


@dataclass(frozen=True)
class JobPlan:
    index: int
    order: ChaosOrder
    idempotency_key: str
    signals: tuple[SignalPlan, ...]
    job_id: str = field(default="", compare=False)

    @property
    def variant(self) -> Variant:
        return self.order.variant

    @property
    def reordered(self) -> bool:
        """``ship`` is due before ``approve``, the order the job waits for them in."""
        by_name = {s.name: s for s in self.signals}
        return by_name["ship"].delay_s < by_name["approve"].delay_s


def plan_jobs(seed: int, jobs: int) -> list[JobPlan]:
    rng = random.Random(f"jobs-{seed}")
    plans = []
    for index in range(jobs):
        roll = rng.random()
        variant: Variant = "reject" if roll < 0.15 else "flaky" if roll < 0.3 else "ok"
        order = ChaosOrder(
            n=index,
            variant=variant,
            work_steps=rng.randint(1, 3),
            nap_ms=rng.choice((0, 0, 50, 200, 1200)),
        )
        signals = []
        for name in SIGNALS:
            early = rng.random() < 0.35
            payload: dict[str, Any] = {"n": index, "signal": name}
            if name == "approve":
                payload["approved"] = variant != "reject"
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
                )
            )
        plans.append(JobPlan(index, order, f"chaos-{seed}-{index}", tuple(signals)))
    return plans


class CrashSchedule:
    """The crash plan of each spawned worker: the named points in a seeded round robin."""

    def __init__(self, seed: int, armed_share: float = 0.85) -> None:
        self._random = random.Random(f"crashes-{seed}")
        self._points = list(CRASH_AFTER)
        self._random.shuffle(self._points)
        self._next = 0
        self.armed_share = armed_share

    def next(self) -> CrashPlan:
        if self._random.random() >= self.armed_share:
            return CrashPlan()
        point = self._points[self._next % len(self._points)]
        self._next += 1
        low, high = CRASH_AFTER[point]
        return CrashPlan(point, self._random.randint(low, high))  # type: ignore[arg-type]
