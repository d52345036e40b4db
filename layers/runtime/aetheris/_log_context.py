"""The keys of the tick a log line belongs to, stamped on every line the engine and job code write.

A tick (one queue record) opens ``tick(job_id=..., seq=..., worker_id=...)``; the engine adds what
it learns as it goes (``add(job_type=...)`` once the job is loaded, ``fence`` and ``attempt`` once
the slot is claimed, ``step`` once a step runs). ``TickKeys``, a ``logging.Filter`` put on each of
the library's loggers (``logger(name)``) and on the handlers' Powertools loggers, copies the keys
onto every record that does not carry them already, so whatever handler writes the line sees them:
Powertools' JSON formatter on Lambda, ``caplog`` in tests, ``readable()`` locally.

Which keys a line carries (those known when it is written; a missing one is absent, never null):

* a worker line once the slot is claimed — and every ``ctx.logger`` line: ``job_id``, ``job_type``,
  ``seq``, ``attempt``, ``fence``, ``worker_id`` (plus ``message_id`` from the SQS record);
  ``sctx.logger`` lines and the engine's lines while a step runs add ``step``;
* a worker line before the claim (a stale, busy or deferred tick): ``job_id``, ``seq``,
  ``worker_id``, and ``job_type`` once the job was read (an unknown job has none);
* a signal-ingest line: ``job_id``, ``signal``, ``signal_id``, ``message_id``, ``job_type`` if
  the job exists, ``seq`` of the tick it sends when it wakes the job — no fence or attempt: ingest
  holds no slot;
* a sweeper line about one job: ``job_id``, ``job_type``, ``seq`` (the slot it ticks) — no fence,
  attempt or worker: it holds nothing; the evidence (the dead claim's worker, fence) is in ``extra``.

Held in a ``ContextVar`` whose value is one mutable holder per tick. Threads started for the tick
(the step body, the lease heartbeat) start with that holder (``in_this_context``) and so share it:
keys added later by the tick are seen there too. asyncio tasks copy the context by themselves. The
tick that opened the holder resets the variable when it ends, so a warm Lambda's next record starts
with no keys: a line of job B never carries job A's. A body abandoned after its time limit keeps
job A's holder — its late lines are A's, as they should be.

Rejected: Powertools ``append_keys`` on the handler's logger (the engine cannot reach that logger;
its thread-safe keys are not seen by a thread started later; locally the engine logs through plain
``logging``); a ``LoggerAdapter`` at each call site (a line logged through any other logger would
miss the keys); ``logging.setLogRecordFactory`` (process-wide: it would stamp every library's lines).
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar

T = TypeVar("T")
# The six keys the issue asks for on every line of a tick (where they exist for that line).
TICK_KEYS: Final = ("job_id", "job_type", "seq", "attempt", "fence", "worker_id")


class _Holder:
    """One tick's keys; replaced whole on each change, so a reader on another thread sees a
    consistent dict."""

    __slots__ = ("keys",)

    def __init__(self, keys: dict[str, object]) -> None:
        self.keys = keys


_TICK: contextvars.ContextVar[_Holder | None] = contextvars.ContextVar("aetheris_tick_keys", default=None)


def _scalars(keys: dict[str, object]) -> dict[str, object]:
    # Ids, names and numbers only: a key is never a payload, so it can never carry a secret.
    return {k: v for k, v in keys.items() if isinstance(v, str | int | float | bool)}


def current() -> dict[str, object]:
    """The keys of the tick running in this context (empty outside a tick)."""
    holder = _TICK.get()
    return dict(holder.keys) if holder is not None else {}


@contextmanager
def tick(**keys: object) -> Iterator[None]:
    """The keys of one tick, for every line written inside (on any thread it starts).

    Inside an open tick of the same job (the worker inside the handler's record) it joins it: its
    keys are added and the outer one clears them all when it ends. A tick of another job, or with
    no job id, gets a holder of its own, gone when it ends.
    """
    keys = _scalars(keys)
    open_ = _TICK.get()
    if open_ is not None and keys.get("job_id", open_.keys.get("job_id")) == open_.keys.get("job_id"):
        add(**keys)
        yield
        return
    token = _TICK.set(_Holder(keys))
    try:
        yield
    finally:
        _TICK.reset(token)


def add(**keys: object) -> None:
    """Add keys to the open tick (a no-op outside one); ``None`` values are left out."""
    holder = _TICK.get()
    if holder is not None:
        holder.keys = {**holder.keys, **_scalars(keys)}


def holder() -> object:
    """The open tick's keys as one opaque value, for ``adopt`` on a thread that outlives the tick."""
    return _TICK.get()


def adopt(keys: object) -> None:
    """Take on the keys ``holder()`` returned: a sticky job function (``_engine/sticky.py``) lives on
    one thread across its ticks, and its lines carry the tick it is serving now, not its first."""
    _TICK.set(keys if isinstance(keys, _Holder) else None)


def in_this_context(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn``, to run on a thread started for this tick, with this tick's keys (a thread starts
    with an empty context, so it would have none).

    Only the tick keys go across, not a ``copy_context()`` of everything: the caller's context
    also holds the determinism guard's state (``_engine/guard.py``: "orchestrating", "inside a
    tool"), which a step body's thread must start without."""
    holder = _TICK.get()

    def run(*args: Any, **kwargs: Any) -> T:
        def entered() -> T:
            _TICK.set(holder)
            return fn(*args, **kwargs)

        return contextvars.Context().run(entered)

    return run


class TickKeys(logging.Filter):
    """Copies the tick's keys onto each record that does not have them (explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


FILTER: Final = TickKeys()


def logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)`` with the tick keys on every record it makes."""
    log = logging.getLogger(name)
    log.addFilter(FILTER)  # once: addFilter ignores a filter it already has
    return log


class Readable(logging.Formatter):
    """The local format: the line, then its tick keys as ``key=value`` (``aetheris dev``)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        shown = [f"{k}={getattr(record, k)}" for k in (*TICK_KEYS, "step") if hasattr(record, k)]
        return f"{line}  [{' '.join(shown)}]" if shown else line
