"""How long an item lives: the provisional TTL every item is written with, and a job's floor.

Pure arithmetic over ``Settings.retention`` and ``Settings.retention_horizon``; the rule and the
passes that keep it are described in ``retention.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aetheris._store import schema

if TYPE_CHECKING:
    from aetheris._store.dynamo import Item
    from aetheris.config import Settings


def expires_at(now: datetime, retention: timedelta) -> int:
    """The TTL value DynamoDB expects: epoch seconds (a number), here ``now + retention``."""
    return int((now + retention).timestamp())


@dataclass(frozen=True)
class Lifetime:
    """How long an item lives: ``retention`` after its job's end, ``horizon`` more at most."""

    retention: timedelta = timedelta(days=30)
    horizon: timedelta = timedelta(days=30)

    @classmethod
    def of(cls, settings: Settings) -> Lifetime:
        return cls(settings.retention, settings.retention_horizon)

    def provisional(self, now: datetime) -> int:
        """The TTL an item written at ``now`` carries: ``now + retention + horizon`` (epoch seconds)."""
        return expires_at(now, self.retention + self.horizon)

    def provisional_ms(self, now_ms: int) -> int:
        return now_ms // 1000 + int((self.retention + self.horizon).total_seconds())

    def floor(self, job: Item) -> int:
        """The job's floor: its recorded ``ttl_floor``, else (a job from before provisional TTLs)
        its start + retention + horizon, which every item written since satisfies."""
        recorded = job.get(schema.TTL_FLOOR)
        if recorded is not None:
            return int(recorded)
        return self.provisional(datetime.fromisoformat(str(job["created_at"])))

    def extension_due(self, job: Item) -> datetime:
        """When the live job's items must be extended: half the horizon before the floor would no
        longer cover a full retention after an end."""
        floor = datetime.fromtimestamp(self.floor(job), UTC)
        return floor - self.retention - self.horizon / 2


def pass_pending(job: Item) -> bool:
    """Does this job, at its end, need the old end-of-job pass (it has no floor: its older items
    carry no TTL)?"""
    return schema.TTL_FLOOR not in job
