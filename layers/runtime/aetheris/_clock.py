"""Time and randomness, injected: the only module that reads the wall clock or the OS's entropy.

Runtime code receives a ``Clock`` and an ``IdSource``; tests pass ``FakeClock`` (time moves only when
the test says so) and a seeded ``IdSource``. A lint rule bans the direct calls everywhere else.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, duration: timedelta) -> None: ...

    def wait(self, wake: threading.Event, duration: timedelta) -> None:
        """Block until ``wake`` is set or, on this clock, about ``duration`` has passed (the
        caller checks the time again: a fake clock returns whenever it moves)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, duration: timedelta) -> None:
        time.sleep(max(0.0, duration.total_seconds()))

    def wait(self, wake: threading.Event, duration: timedelta) -> None:
        wake.wait(max(0.0, duration.total_seconds()))


class FakeClock:
    """A clock that moves only when told to; ``sleep`` advances it instead of waiting."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()
        self._waiting: set[threading.Event] = set()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, duration: timedelta) -> None:
        with self._lock:
            self._now += duration
            waiting = list(self._waiting)
        for wake in waiting:  # time moved: whoever waits on this clock looks at it again
            wake.set()

    def sleep(self, duration: timedelta) -> None:
        self.advance(duration)

    def wait(self, wake: threading.Event, duration: timedelta) -> None:
        """Returns when the clock is advanced (by any amount) or ``wake`` is set — never on real time."""
        with self._lock:
            self._waiting.add(wake)
        try:
            wake.wait()
        finally:
            with self._lock:
                self._waiting.discard(wake)


class IdSource:
    """Random ids and numbers; seeded for reproducible tests, OS entropy otherwise."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed) if seed is not None else None
        self._lock = threading.Lock()

    def uuid(self) -> str:
        if self._random is None:
            return str(uuid.uuid4())
        with self._lock:
            return str(uuid.UUID(int=self._random.getrandbits(128), version=4))

    def random(self) -> float:
        if self._random is None:
            return random.SystemRandom().random()
        with self._lock:
            return self._random.random()


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)
