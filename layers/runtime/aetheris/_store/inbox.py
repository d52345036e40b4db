"""The signal inbox: one item per signal (``pk = job_id``, ``sk = signal_id``), written once.

The put is conditional on ``attribute_not_exists``: a redelivered or re-sent signal is a no-op
and keeps its first arrival. Which signal a wait consumed is decided by the job's log
(``SignalConsumed`` carries the ``signal_id``), so the inbox itself is never updated.
Arrival order is ``arrived_at`` (milliseconds), then the SQS send time, then the id.

A signal id names one signal of the job: the same id with the same name and payload is that signal
again (a retry), with another name or payload it is a ``SignalIdConflict`` — never silently
dropped in favour of the first. The HTTP API stores the signal here itself before it answers 202,
so the conflict is found while the client is still there to be told (409); see ``Runtime.send_signal``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aetheris._store.conditions import absent
from aetheris._store.dynamo import ConditionFailed, Table, to_dynamo
from aetheris._store.lifetime import Lifetime
from aetheris._store.payloads import is_reference
from aetheris.errors import NonRetryableError


class SignalIdConflict(NonRetryableError):
    """The signal id is taken, for this job, by a signal with another name or payload."""

    def __init__(self, job_id: str, signal_id: str, name: str, stored_name: str) -> None:
        self.job_id, self.signal_id, self.name, self.stored_name = job_id, signal_id, name, stored_name
        what = "another payload" if name == stored_name else f"the name {stored_name!r}"
        super().__init__(
            f"signal id {signal_id!r} of job {job_id} was already used for a signal with {what}; "
            f"a signal id names one signal: send this one under a new signal_id"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.job_id, self.signal_id, self.name, self.stored_name))


@dataclass(frozen=True)
class InboxSignal:
    job_id: str
    signal_id: str
    name: str
    payload_json: str
    arrived_at_ms: int
    sent_at_ms: int

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> InboxSignal:
        return cls(
            job_id=item["pk"],
            signal_id=item["sk"],
            name=item["name"],
            payload_json=item["payload"],
            arrived_at_ms=int(item["arrived_at"]),
            sent_at_ms=int(item.get("sent_at", 0)),
        )

    def same_signal(self, other: InboxSignal) -> bool:
        """Is ``other`` this signal sent again (same name and payload; arrival times aside)?"""
        if self.name != other.name:
            return False
        if self.payload_json == other.payload_json:
            return True
        # A text written by an older ingest (json.dumps, ASCII-escaped) holds the same value.
        refs = is_reference(self.payload_json) or is_reference(other.payload_json)
        return not refs and json.loads(self.payload_json) == json.loads(other.payload_json)


class Inbox:
    def __init__(self, table: Table, lifetime: Lifetime | None = None) -> None:
        self.table = table
        self.lifetime = lifetime or Lifetime()

    def store(self, signal: InboxSignal) -> bool:
        """Store the signal: ``True`` if new, ``False`` if this very signal was stored before.

        Raises ``SignalIdConflict`` if the id is held by a different signal (the stored one stays).
        """
        try:
            self._put(signal)
        except ConditionFailed as taken:
            stored = InboxSignal.from_item(taken.current) if taken.current else None
            if stored is None or stored.same_signal(signal):
                return False
            raise SignalIdConflict(signal.job_id, signal.signal_id, signal.name, stored.name) from None
        return True

    def _put(self, signal: InboxSignal) -> None:
        item = {
            "pk": signal.job_id,
            "sk": signal.signal_id,
            "name": signal.name,
            "payload": signal.payload_json,
            "arrived_at": signal.arrived_at_ms,
            "sent_at": signal.sent_at_ms,
            # Provisional (_store/retention.py): a signal outlives its job's end by retention at least.
            "expires_at": self.lifetime.provisional_ms(signal.arrived_at_ms),
        }
        # A signal id is stored once: a duplicate delivery never becomes a second signal.
        self.table.put(item, absent("sk"))

    def has(self, job_id: str, signal_id: str, name: str) -> bool:
        """Was signal ``signal_id`` named ``name`` stored for the job (a retried send)?"""
        item = self.table.get(job_id, signal_id)
        return item is not None and item.get("name") == name

    def pending(self, job_id: str, name: str, consumed: set[str]) -> list[InboxSignal]:
        """Signals ``name`` of the job not consumed yet, in arrival order."""
        items = self.table.query(
            KeyConditionExpression="pk = :job",
            FilterExpression="#name = :name",
            ExpressionAttributeNames={"#name": "name"},
            ExpressionAttributeValues=to_dynamo({":job": job_id, ":name": name}),
            ConsistentRead=True,
        )
        signals = [InboxSignal.from_item(i) for i in items if i["sk"] not in consumed]
        return sorted(signals, key=lambda s: (s.arrived_at_ms, s.sent_at_ms, s.signal_id))
