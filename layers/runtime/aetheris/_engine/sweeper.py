"""The sweeper: finds jobs that should be moving and are not, and sends them a tick.

A job needs a tick when it is runnable (``PENDING`` or ``RUNNING``), nobody holds a live claim on
its next slot, and its next tick was due more than ``stall_after`` ago: the tick was lost between
commit and enqueue, the first tick after ``start`` never got sent, or a message was dropped. A
redundant tick is harmless (the slot rules in ``worker.py`` drop it), so the sweeper errs towards
sending. Parked jobs (sleeping, or waiting for a signal) are ticked only once their timer or wait
deadline is due, found on the sparse by-due index; a wait without a deadline is never touched.
A finished job on that index is one whose retention pass did not complete (``_store/retention.py``):
the sweeper runs the pass again instead of ticking it.

Candidates come from the by-status index (jobs whose projection has not changed for
``stall_after``), never a scan; each candidate's log then decides. Rejected: tracking "last
progress" on the job item, which would cost a write on every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from aetheris._clock import from_millis, to_millis
from aetheris._engine.history import next_tick_delay
from aetheris._engine.services import Services
from aetheris._store import schema
from aetheris._store.dynamo import to_dynamo
from aetheris._store.queue import Tick
from aetheris._store.schema import DUE_SHARD
from aetheris.events import Event, EventType, JobStatus

RUNNABLE = (JobStatus.PENDING, JobStatus.RUNNING)
PARKED = (JobStatus.SLEEPING, JobStatus.WAITING)


@dataclass
class SweepReport:
    examined: int = 0
    ticked: list[str] = field(default_factory=list)  # every job ticked: stalled ones and due ones
    stalled: list[str] = field(default_factory=list)  # runnable jobs whose tick went missing
    due: list[str] = field(default_factory=list)  # parked jobs whose long timer or deadline came (routine)
    expired: list[str] = field(default_factory=list)  # finished jobs whose retention pass was redone


class Sweeper:
    def __init__(self, services: Services, stall_after: timedelta) -> None:
        self.services = services
        self.stall_after = stall_after

    def sweep(self, limit: int = 200) -> SweepReport:
        report = SweepReport()
        now = self.services.clock.now()
        cutoff = (now - self.stall_after).isoformat()
        for status in RUNNABLE:
            for job_id in self._unchanged_since(status, cutoff, limit):
                report.examined += 1
                if self._tick_if_stalled(job_id):
                    report.ticked.append(job_id)
                    report.stalled.append(job_id)
        for job_id in self._due_by(to_millis(now), limit):
            report.examined += 1
            if self._tick_if_due(job_id, report):
                report.ticked.append(job_id)
                report.due.append(job_id)
        return report

    def _due_by(self, now_ms: int, limit: int) -> list[str]:
        """Parked jobs whose timer or wait deadline has come (the sparse by-due index)."""
        items = self.services.jobs.table.query(
            IndexName=schema.DUE_INDEX,
            KeyConditionExpression=f"{schema.DUE_INDEX_PK} = :shard AND {schema.DUE_INDEX_SK} <= :now",
            ExpressionAttributeValues=to_dynamo({":shard": DUE_SHARD, ":now": now_ms}),
            Limit=limit,
        )
        return [str(item["pk"]) for item in items[:limit]]

    def _tick_if_due(self, job_id: str, report: SweepReport) -> bool:
        job = self.services.jobs.get(job_id)
        if job is not None and JobStatus(job["status"]).is_terminal and schema.TTL_ATTRIBUTE in job:
            self.services.retention.expire(job_id, int(job[schema.TTL_ATTRIBUTE]))
            report.expired.append(job_id)
            return False
        snapshot = self.services.jobs.load(job_id)
        if snapshot is None or snapshot.status not in PARKED:
            return False
        if snapshot.claim is not None and int(snapshot.claim.get("lease_until", 0)) >= to_millis(
            self.services.clock.now()
        ):
            return False
        self.services.queue.send(Tick(job_id=job_id, seq=snapshot.next_seq))
        return True

    def _unchanged_since(self, status: JobStatus, cutoff: str, limit: int) -> list[str]:
        items = self.services.jobs.table.query(
            IndexName=schema.STATUS_INDEX,
            KeyConditionExpression=f"{schema.STATUS_INDEX_PK} = :status AND {schema.STATUS_INDEX_SK} < :cut",
            ExpressionAttributeValues=to_dynamo({":status": status.value, ":cut": cutoff}),
            Limit=limit,
        )
        return [str(item["pk"]) for item in items[:limit]]

    def _tick_if_stalled(self, job_id: str) -> bool:
        services = self.services
        snapshot = services.jobs.load(job_id)
        if snapshot is None or snapshot.status not in RUNNABLE or not snapshot.events:
            return False
        now = services.clock.now()
        if snapshot.claim is not None and int(snapshot.claim.get("lease_until", 0)) >= to_millis(now):
            return False  # a live worker holds the job
        last = Event.from_item(snapshot.events[-1])
        due_at = (
            last.next_attempt_at if last.type is EventType.STEP_FAILED and last.next_attempt_at else last.at
        )
        if snapshot.claim is not None:  # a worker died holding the slot: stalled since its lease ran out
            due_at = max(due_at, from_millis(int(snapshot.claim.get("lease_until", 0))))
        delay = next_tick_delay(last, now)
        if delay is None or now - due_at < self.stall_after:
            return False
        services.queue.send(Tick(job_id=job_id, seq=snapshot.next_seq), delay)
        return True
