"""The sweeper: every period, look at each job whose moment to be looked at has come, and act.

Every job that is neither finished-and-clean nor parked on a signal without deadline is on the
sparse, write-sharded attention index (``_store/watch.py``) under the moment it next needs a look:
a runnable job's progress deadline (its next tick's due time + ``stall_after``), a timer's fire
time, a wait's deadline, a finished job's pending retention pass. A sweep queries each of the
``sweep_shards`` partitions for ``due_at <= now``, reads each due job's tail (one consistent Query
of three items) and acts on ``_diagnosis.diagnose``'s verdict:

* healthy (it progressed, a live worker holds it, its timer is later): the entry moves forward,
  or off the index (a wait without deadline);
* stalled — runnable (``PENDING``, ``RUNNING``, ``COMPENSATING``) with nobody holding it and its next
  tick ``stall_after`` overdue (the first tick never sent, a tick dead-lettered or lost with a dead
  worker), or its worker died holding the slot — or a parked job whose timer or deadline has come,
  or that was asked to cancel: a tick is sent and ``swept_at`` / ``sweeps`` recorded on the job item.
  The entry stays due until the job moves, so a job the tick did not help stays visible (stuck);
  another tick follows after ``stall_after``, then 2x, 4x ... (a backlog is not fed);
* finished with its old retention pass pending (a job from before provisional TTLs): the pass
  runs again.

Before any of that, a live job whose retention extension is due (``Lifetime.extension_due``: the
commits cap its place on the index by it) has its items' TTLs extended (``Retention.extend``, O(N)
once per ``retention_horizon / 2`` per job that lives that long), and an entry moved forward never
goes past the next extension.

A healthy job is never due, because the worker refreshes its deadline when less than half of
``stall_after`` is left (at most one job-item write per ``stall_after / 2``, never one per step);
so a sweep costs ``sweep_shards`` Queries plus a few requests per job that needs something,
whatever the number of healthy jobs. Most lost ticks are recovered before that by SQS redelivering
the previous tick (``worker.py``); the sweeper is the backstop.

Scale it is built for (default 32 shards, ``stall_after`` 2 min, a 1-minute schedule): 1 million
live jobs, all RUNNING and stepping, refresh 1M / 60 s ≈ 17,000 index writes/s, ≈ 520 per shard (a
partition key takes 1,000); a sweep then costs 32 Queries (1 request each while nothing is due,
≈ 10,000 due keys per 1 MB page) + per due job 1 Query + at most 1 UpdateItem + 1 SendMessage, up
to ``limit`` due jobs per sweep (the rest come first in the next one: oldest first per shard).
Grow ``sweep_shards`` with the live-job count (never shrink it while entries exist in the old
shards: they would no longer be read).

Rejected: reading the by-status index for jobs unchanged since ``stall_after`` (the old sweeper):
a status changes rarely, so every healthy long-running job matches, and a stalled job behind more
healthy ones than a page was never found; its partitions are one per status, so a million RUNNING
jobs share one key. A "last progress" attribute written with every commit: a job-item write per
step (the cost issue's budget is two writes a step). Scanning the table: cost grows with every
job ever kept. A DynamoDB Stream or EventBridge Scheduler per timer: one more moving part per job
and no answer for a lost tick.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from aetheris import _log_context
from aetheris._diagnosis import Action, Finding, Reason, diagnose
from aetheris._engine.services import Services
from aetheris._store import schema, watch
from aetheris._store.idempotency import record_pk_of
from aetheris._store.queue import Tick

# Its lines about one job carry job_id, job_type, seq (the slot it ticks); no fence, attempt or
# worker: the sweeper holds nothing (the dead claim's worker and fence are in the evidence).
log = _log_context.logger("aetheris.sweeper")
_STALLED = (Reason.TICK_LOST, Reason.LEASE_EXPIRED, Reason.CANCEL_PENDING)


@dataclass
class SweepReport:
    examined: int = 0  # due entries read from the index
    ticked: list[str] = field(default_factory=list)  # every job ticked: stalled ones and due ones
    stalled: list[str] = field(default_factory=list)  # jobs that should have been moving and were not
    due: list[str] = field(default_factory=list)  # parked jobs whose timer or deadline came (routine)
    expired: list[str] = field(default_factory=list)  # finished jobs whose retention pass was redone
    extended: list[str] = field(default_factory=list)  # live jobs whose items' TTLs were extended
    moved: int = 0  # healthy jobs whose entry was early, moved forward (or off the index)
    stuck: list[str] = field(default_factory=list)  # stalled or overdue for stall_after or longer
    complete: bool = True  # False: the limit was reached; the rest are next sweep's

    def as_dict(self) -> dict[str, object]:
        return {
            "examined": self.examined,
            "ticked": self.ticked,
            "stalled": self.stalled,
            "due": self.due,
            "expired": self.expired,
            "extended": self.extended,
            "moved": self.moved,
            "stuck": self.stuck,
            "complete": self.complete,
        }


class Sweeper:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings

    def sweep(self, limit: int = 5000) -> SweepReport:
        """One pass over every shard's due entries, at most ``limit`` of them in all."""
        report = SweepReport()
        now = self.services.clock.now()
        table = self.services.jobs.table
        for shard in range(self.settings.sweep_shards):
            for entry in watch.due_entries(table, str(shard), now, limit - report.examined):
                report.examined += 1
                self._look(entry, report)
            if report.examined >= limit:
                report.complete = False
                break
        return report

    def _look(self, entry: watch.Entry, report: SweepReport) -> None:
        with _log_context.tick(job_id=entry.job_id):  # its own keys: the next entry is another job
            self._look_at(entry, report)

    def _look_at(self, entry: watch.Entry, report: SweepReport) -> None:
        services, settings = self.services, self.settings
        tail = watch.read_tail(services.jobs.table, entry.job_id)
        now = services.clock.now()
        if tail is None or tail.due_at_ms is None or tail.due_at_ms > entry.due_at_ms:
            return  # gone, or moved since the index was read (the index lags the table)
        _log_context.add(job_type=tail.job.get("job_type"), seq=tail.next_seq)
        lifetime = services.retention.lifetime
        if not tail.status.is_terminal and lifetime.extension_due(tail.job) <= now:
            services.retention.extend(tail.job, now, record_pk_of(tail.job))
            report.extended.append(entry.job_id)
            # The entry stays where it was (the move below is conditional on it); the floor moved.
            tail = replace(tail, job={**tail.job, schema.TTL_FLOOR: lifetime.provisional(now)})
        finding = diagnose(tail, now, settings)
        if finding.stuck(now, settings.stall_after):
            report.stuck.append(entry.job_id)
        if finding.reason is Reason.TIMER_DUE:
            report.due.append(entry.job_id)
        elif finding.reason in _STALLED and finding.action is Action.TICK:
            report.stalled.append(entry.job_id)
        if finding.action is Action.MOVE:
            # Never past a live job's next retention extension (a wait without timeout: at it).
            cap = None if tail.status.is_terminal else lifetime.extension_due(tail.job)
            at = watch.earliest(finding.next_look, cap)
            report.moved += watch.move(services.jobs.table, tail, at, settings.sweep_shards)
        elif finding.action is Action.EXPIRE:
            services.retention.expire(entry.job_id, int(tail.job[schema.TTL_ATTRIBUTE]))
            report.expired.append(entry.job_id)
        elif finding.action is Action.TICK and self._rescue(tail, finding):
            report.ticked.append(entry.job_id)
            if finding.reason in _STALLED:
                evidence = finding.evidence
                log.info(
                    "job %s is %s: sent it a tick for slot %s (rescue %s)",
                    entry.job_id,
                    finding.reason,
                    tail.next_seq,
                    finding.sweeps,
                    extra={
                        "reason": str(finding.reason),
                        "claimed_by": evidence.get("worker_id"),
                        "claim_fence": evidence.get("fence"),
                    },
                )

    def _rescue(self, tail: watch.Tail, finding: Finding) -> bool:
        # Recorded first: if the job moves meanwhile (the condition fails), no tick is needed.
        if not watch.mark_swept(self.services.jobs.table, tail, self.services.clock.now(), finding.sweeps):
            return False
        self.services.queue.send(Tick(job_id=str(tail.job[schema.PK]), seq=tail.next_seq))
        return True
