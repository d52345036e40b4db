"""Named crash points for tests: the next worker to reach an armed point dies like a killed process.

``SimulatedCrash`` derives from ``BaseException``: nothing in the runtime catches it, so no cleanup
runs, no message is acknowledged and no lease is released. In production no point is ever armed.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Literal, get_args

CrashPoint = Literal[
    "before_effect",
    "after_effect",
    "after_record",
    "before_commit",
    "after_commit",
    "before_enqueue",
    "before_retention",
    "after_inbox_write",
]
CRASH_POINTS: tuple[str, ...] = get_args(CrashPoint)


class SimulatedCrash(BaseException):
    def __init__(self, point: str) -> None:
        self.point = point
        super().__init__(f"simulated crash at {point}")


class Faults:
    def __init__(self) -> None:
        self._armed: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.fired: list[str] = []
        # A paused worker process (SIGSTOP) runs nothing, its lease heartbeat included: tests that
        # stall a worker in-process pause its heartbeat too, or it would keep the lease alive.
        self.heartbeats_paused = False

    def crash_at(self, point: CrashPoint, times: int = 1) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {point!r}; one of {', '.join(CRASH_POINTS)}")
        with self._lock:
            self._armed[point] += times

    def reach(self, point: CrashPoint) -> None:
        with self._lock:
            if self._armed[point] <= 0:
                return
            self._armed[point] -= 1
            self.fired.append(point)
        raise SimulatedCrash(point)

    @property
    def pending(self) -> int:
        with self._lock:
            return sum(self._armed.values())


NO_FAULTS = Faults()
