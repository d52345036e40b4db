"""Timers, retention and the dead-letter queues: what a run must leave clean.

* Timers: a job's ``TimerFired`` is never before the fire time its ``TimerStarted`` set, and at most
  one sweep period plus ``Limits.timer_margin_s`` plus the run's *pace* after it. The pace is the
  longest a tick that was due at once waited to be picked up in this run (over every job, the time
  from a step's commit to the first claim of the next slot): on a machine busy with other work
  every tick is late by that much, and a timer is not late for being as slow as everything else;
  it is late if its tick waited longer than any other tick did, by more than a sweep and a margin.
* Retention: a finished job's items all carry ``expires_at`` (job item, events, ledger, inbox) and
  the job item is off the retention-pending index (``due_shard``); no item of a job got its TTL
  before the job's end was committed (a live job's items would be deleted under it), and no item of
  a job still open has one.
* The dead-letter queues are empty, and no accepted signal is left on the signal queue.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from aetheris import EventType
from aetheris_infra.chaos.checked import TERMINAL_TYPES, CheckedJob, Evidence
from aetheris_infra.chaos.journal import ttl_writes
from aetheris_infra.chaos.progress import Progress

TTL = "expires_at"
DUE_MARKER = "due_shard"


def check_hygiene(ev: Evidence) -> None:
    ev.report.pace_s = round(pace(ev), 3)
    for job in ev.jobs:
        _check_timers(job, ev)
        _check_retention(job, ev)
    _check_ttl_order(ev)
    r = ev.report
    for queue, depth in ev.obs.dlq.items():
        if depth:
            r.violate(f"the {queue} dead-letter queue holds {depth} messages")
    labels = {job.job_id: job.label() for job in ev.jobs}
    for job_id, count in sorted(ev.obs.dead_letters.items()):
        r.violate(f"{labels.get(job_id, job_id)}: {count} of its messages went to a dead-letter queue")
    for queue, depth in ev.obs.leftovers.items():
        if depth:
            r.violate(f"{depth} messages were still on the {queue} queue at the end")


def _check_timers(job: CheckedJob, ev: Evidence) -> None:
    r, limits = ev.report, ev.obs.limits
    late_bound = limits.sweep_every_s + limits.timer_margin_s + r.pace_s
    started = {e.op: e for e in job.events if e.type is EventType.TIMER_STARTED}
    for fired in (e for e in job.events if e.type is EventType.TIMER_FIRED):
        start = started.get(fired.op)
        if start is None or "fire_at" not in start.detail:
            r.violate(f"{job.label()}: TimerFired (seq {fired.seq}) without its TimerStarted")
            continue
        due = datetime.fromisoformat(str(start.detail["fire_at"]))
        late = (fired.at - due).total_seconds()
        r.timers_fired += 1
        r.timer_max_late_s = max(r.timer_max_late_s, round(late, 3))
        if late < 0:
            r.timers_early += 1
            r.violate(f"{job.label()}: its timer fired {-late:.3f} s before its due time {due.isoformat()}")
        elif late > late_bound:
            r.timers_late += 1
            r.violate(
                f"{job.label()}: its timer fired {late:.1f} s after its due time, more than one sweep "
                f"period plus the margin plus the run's pace ({late_bound:.1f} s)"
            )


def pace(ev: Evidence) -> float:
    """The longest wait of a due tick in the run (``Progress.pace`` over the whole journal, its maximum)."""
    progress = Progress(Path("journal.jsonl"))  # fed here, never read from the file
    progress.feed(ev.obs.journal)
    return progress.pace(quantile=1.0)


def _check_retention(job: CheckedJob, ev: Evidence) -> None:
    r = ev.report
    items = [*([job.item] if job.item else []), *job.slots, *job.effects, *job.inbox]
    without = [str(i["sk"]) for i in items if TTL not in i]
    if job.ended:
        marked = bool(job.item and DUE_MARKER in job.item)
        if without or marked:
            r.retention_incomplete += 1
            shown = ", ".join(without[:5]) + (f" and {len(without) - 5} more" if len(without) > 5 else "")
            what = [f"{len(without)} items without {TTL} ({shown})"] if without else []
            what += ["still on the retention-pending index"] if marked else []
            r.violate(f"{job.label()}: retention pass incomplete: {'; '.join(what)}")
    elif len(without) < len(items):
        r.ttl_on_live_jobs += 1
        r.violate(f"{job.label()} is not finished, yet {len(items) - len(without)} of its items have a TTL")


def _check_ttl_order(ev: Evidence) -> None:
    """No TTL written on a job's items before the write that committed its end."""
    ended_at = {
        w.job_id: w.n for w in ev.slots if w.ok and w.kind == "commit" and w.event_type in TERMINAL_TYPES
    }
    early: dict[str, int] = {}
    for write in ttl_writes(ev.obs.journal):
        end = ended_at.get(write.job_id)
        if write.ok and (end is None or write.n < end) and write.job_id not in early:
            early[write.job_id] = write.n
    labels = {job.job_id: job.label() for job in ev.jobs}
    for job_id, n in early.items():
        ev.report.ttl_on_live_jobs += 1
        end = ended_at.get(job_id)
        when = f"before its end (write {end})" if end is not None else "and it never ended"
        ev.report.violate(f"{labels.get(job_id, job_id)}: an item got its TTL at journal write {n}, {when}")
