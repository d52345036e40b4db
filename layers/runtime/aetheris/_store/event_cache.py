"""The committed events a worker keeps per job between ticks, bounded in (approximate) bytes.

Committed events never change, so a worker that saw a job's log reads only what is new on its next
tick. The cache holds at most ``max_bytes`` of events (and ``max_jobs`` jobs), least recently used
job first out; a job whose log alone is over the bound is not kept at all (its ticks read cold,
from the segments: ``segments.py``). Sizes are estimates of the Python objects (a dict of ~20
attributes is ~1.4 KB in CPython before its big strings), cheap enough to take per event.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from aetheris._store.dynamo import Item

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
_DICT_BYTES = 100  # the dict itself
_ATTRIBUTE_BYTES = 64  # a slot in it, its key and a small value
# The attributes that can be long (results, errors, signal payloads, inputs): counted by length.
_LONG = ("result", "error", "values", "detail", "input")


def approx_bytes(item: Item) -> int:
    size = _DICT_BYTES + _ATTRIBUTE_BYTES * len(item)
    for name in _LONG:
        value = item.get(name)
        if isinstance(value, str):
            size += len(value)
    return size


@dataclass
class _Entry:
    events: list[Item] = field(default_factory=list)
    size: int = 0


class EventCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES, max_jobs: int = 1000) -> None:
        self.max_bytes = max_bytes
        self.max_jobs = max_jobs
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        return self._bytes

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._entries

    def get(self, job_id: str) -> list[Item]:
        """A copy of what is known of the job's log (from seq 0), or nothing."""
        with self._lock:
            entry = self._entries.get(job_id)
            return list(entry.events) if entry else []

    def first(self, job_id: str) -> Item | None:
        """The job's first event (``JobCreated``), if the job is known."""
        with self._lock:
            entry = self._entries.get(job_id)
            return entry.events[0] if entry else None

    def extend(self, job_id: str, events: list[Item], *, replace: bool = False) -> None:
        """Add ``events`` to the job's (or, with ``replace``, make them all of it) and mark the job
        most recently used; the caller has checked they follow on."""
        with self._lock:
            self._extend(job_id, events, replace)

    def append(self, job_id: str, event: Item) -> bool:
        """Our own commit extends what we know, if it directly follows it (``True`` then)."""
        with self._lock:
            entry = self._entries.get(job_id)
            if not entry or int(entry.events[-1]["seq"]) + 1 != int(event["seq"]):
                return False
            self._extend(job_id, [event], False)
            return True

    def _extend(self, job_id: str, events: list[Item], replace: bool) -> None:
        added = sum(approx_bytes(e) for e in events)
        entry = self._entries.pop(job_id, None)
        if entry is not None and replace:
            self._bytes -= entry.size
            entry = None
        entry = entry or _Entry()
        entry.events.extend(events)
        entry.size += added
        self._bytes += added
        if entry.size > self.max_bytes:
            self._bytes -= entry.size  # too big alone: evicting the others would not help
            return
        self._entries[job_id] = entry
        while self._bytes > self.max_bytes or len(self._entries) > self.max_jobs:
            _, dropped = self._entries.popitem(last=False)
            self._bytes -= dropped.size

    def forget(self, job_id: str) -> None:
        with self._lock:
            entry = self._entries.pop(job_id, None)
            if entry is not None:
                self._bytes -= entry.size
