"""The signal inbox: one item per signal (``pk = job_id``, ``sk = signal_id``), written once.

The put is conditional on ``attribute_not_exists``: a redelivered or re-sent signal is a no-op
and keeps its first arrival. Which signal a wait consumed is decided by the job's log
(``SignalConsumed`` carries the ``signal_id``), so the inbox itself is never updated.
Arrival order is ``arrived_at`` (milliseconds), then the SQS send time, then the id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aetheris._store.conditions import absent
from aetheris._store.dynamo import ConditionFailed, Table, to_dynamo


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


class Inbox:
    def __init__(self, table: Table) -> None:
        self.table = table

    def put(self, signal: InboxSignal) -> bool:
        """Store the signal; ``False`` if this signal id was stored before (a duplicate)."""
        item = {
            "pk": signal.job_id,
            "sk": signal.signal_id,
            "name": signal.name,
            "payload": signal.payload_json,
            "arrived_at": signal.arrived_at_ms,
            "sent_at": signal.sent_at_ms,
        }
        try:
            # A signal id is stored once: a duplicate delivery never becomes a second signal.
            self.table.put(item, absent("sk"))
        except ConditionFailed:
            return False
        return True

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
