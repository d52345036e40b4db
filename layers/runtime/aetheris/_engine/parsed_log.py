"""Parsed events of the jobs a worker ticked lately, so that a tick parses only what is new.

``JobStore.load`` keeps each job's committed event items (they never change) and hands the same
item objects out on every load, new ones appended. Parsing them into ``Event``s (a few µs an
event) is a large part of what a replayed tick costs at a long log, so the parsed list is kept
beside them and reused for the prefix that is, object for object, the same items; anything else
(the store dropped or rebuilt its cache) is parsed afresh. Bounded by the events kept over all
jobs, least recently ticked job dropped first.
"""

from __future__ import annotations

import operator
import threading
from collections import OrderedDict
from typing import Any

from pydantic import TypeAdapter

from aetheris.events import Event

# ≈ 1.9 KB per parsed event (measured): 30,000 events ≈ 57 MB at most.
MAX_EVENTS = 30_000
_EVENTS: TypeAdapter[list[Event]] = TypeAdapter(list[Event])


def parse_events(items: list[Any]) -> list[Event]:
    """``[Event.from_item(item) for item in items]``, in one validator call for the items stored
    plainly (most of a long log: ≈ 1 µs an event less than one call each). An item holding JSON
    text (an error, recorded values, a detail) goes through ``from_item`` itself, and the validated
    ``Event`` it gives passes the list's validation as it is (instances are not revalidated)."""
    prepared = [
        Event.from_item(item) if "error" in item or "values" in item or "detail" in item else item
        for item in items
    ]
    return _EVENTS.validate_python(prepared)


class ParsedLogs:
    def __init__(self, max_events: int = MAX_EVENTS) -> None:
        self.max_events = max_events
        self._jobs: OrderedDict[str, tuple[list[Any], list[Event]]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def forget(self, job_id: str) -> None:
        """Drop the job's parsed log (a worker that never saw it: the history bench's cold tick)."""
        with self._lock:
            cached = self._jobs.pop(job_id, None)
            if cached is not None:
                self._held -= len(cached[0])

    def events(self, job_id: str, items: list[Any]) -> list[Event]:
        """``items`` parsed: a new list (the caller may extend it), the known prefix not re-parsed."""
        with self._lock:
            cached = self._jobs.pop(job_id, None)
            if cached is not None:
                self._held -= len(cached[0])
        known_items, known_events = cached if cached is not None else ([], [])
        same = len(known_items) <= len(items) and all(map(operator.is_, known_items, items))
        reuse = len(known_items) if same else 0
        parsed = known_events[:reuse] + parse_events(items[reuse:])
        if len(items) <= self.max_events:
            with self._lock:
                self._jobs[job_id] = (list(items), parsed)
                self._held += len(items)
                while self._held > self.max_events:
                    _, (dropped, _) = self._jobs.popitem(last=False)
                    self._held -= len(dropped)
        return list(parsed)
