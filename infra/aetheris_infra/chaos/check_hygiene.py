"""Timers, retention and the dead-letter queues: what a run must leave clean.

* Timers: a job's ``TimerFired`` is never before the fire time its ``TimerStarted`` set, and at most
  one sweep period plus ``Limits.timer_margin_s`` plus the run's *pace* after it. The pace is the
  longest a tick that was due at once waited to be picked up in this run (over every job, the time
  from a step's commit to the first claim of the next slot): on a machine busy with other work
  every tick is late by that much, and a timer is not late for being as slow as everything else;
  it is late if its tick waited longer than any other tick did, by more than a sweep and a margin.
* Retention (provisional TTLs, ``aetheris/_store/retention.py``): every item of a job carries
  ``expires_at``, except a live job's job item. A finished job's job item expires retention after
  its end and is off the retention-pending index (``due_shard``); every other item expires no
  sooner than that. A live job's items are at or above its floor (``ttl_floor``), and the floor a
  full retention ahead. No TTL write ever set a value that would delete a live item: each is at
  least the lesser of "its write + retention + horizon" and "its job's end + retention".
* The dead-letter queues are empty, and no accepted signal is left on the signal queue.
"""

from __future__ import annotations

import time
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


# Epoch seconds are whole; the runtime's and the server's clocks (one machine) differ by milliseconds.
_SLACK_S = 2
_PROVISIONAL_SLACK_S = 60


def _lifetime() -> tuple[float, float]:
    """(retention, horizon) in seconds, as the run's runtimes read them from the environment."""
    from aetheris.config import Settings

    settings = Settings()
    return settings.retention.total_seconds(), settings.retention_horizon.total_seconds()


def _end_at(job: CheckedJob) -> float | None:
    ends = [e.at.timestamp() for e in job.events if e.type in TERMINAL_TYPES]
    return ends[-1] if ends else None


def _check_retention(job: CheckedJob, ev: Evidence) -> None:
    r = ev.report
    retention, _ = _lifetime()
    others = [*job.slots, *job.effects, *job.inbox, *job.others]
    items = [*([job.item] if job.item else []), *others]
    if job.ended:
        without = [str(i["sk"]) for i in items if TTL not in i]
        marked = bool(job.item and DUE_MARKER in job.item)
        end = _end_at(job)
        least = (end or 0) + retention - _SLACK_S
        short = [str(i["sk"]) for i in others if TTL in i and int(i[TTL]) < least]
        if without or marked or short:
            r.retention_incomplete += 1
            what = [f"{len(without)} items without {TTL} ({_shown(without)})"] if without else []
            what += ["still on the retention-pending index"] if marked else []
            what += [f"{len(short)} expire within retention of the end ({_shown(short)})"] if short else []
            r.violate(f"{job.label()}: retention incomplete: {'; '.join(what)}")
        return
    if job.item is None:
        return
    ttl_floor = job.item.get("ttl_floor")
    # An item below this could vanish before the job's end + retention.
    live_floor = time.time() + retention
    floor = int(ttl_floor) if ttl_floor is not None else None
    below = [str(i["sk"]) for i in others if TTL not in i or floor is None or int(i[TTL]) < floor]
    if TTL in job.item or below or floor is None or floor < live_floor:
        r.ttl_on_live_jobs += 1
        r.violate(
            f"{job.label()} is not finished, yet its items could expire: job item TTL "
            f"{job.item.get(TTL)}, floor {ttl_floor}, {len(below)} items below it ({_shown(below)})"
        )


def _shown(keys: list[str]) -> str:
    return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")


def _check_ttl_order(ev: Evidence) -> None:
    """No TTL write set a value that could delete an item of a live job: each is at least the
    lesser of its write's time + retention + horizon (provisional, extended) and its job's end +
    retention (the job item's, an old job's pass)."""
    retention, horizon = _lifetime()
    # The end as the runtime stamped it (its TTLs count from there), not when the server applied it.
    # Child jobs (``ctx.child``) end like any job: their job item's TTL counts from their end too.
    jobs = [*ev.jobs, *(job.child for job in ev.jobs if job.child is not None)]
    ended_at = {job.job_id: end for job in jobs if (end := _end_at(job)) is not None}
    early: dict[str, tuple[int, int]] = {}
    for write in ttl_writes(ev.obs.journal):
        if not write.ok or write.job_id in early or write.job_id.startswith("IK#"):
            continue
        end = ended_at.get(write.job_id, float("inf"))
        # A provisional TTL counts from the runtime's clock when it built the write, which a slow,
        # retried request may reach the server well after: a minute of slack against days.
        least = min(write.t + retention + horizon - _PROVISIONAL_SLACK_S, end + retention - _SLACK_S)
        if write.value is None or write.value < least:
            early[write.job_id] = (write.n, write.value or 0)
    labels = {job.job_id: job.label() for job in ev.jobs}
    for job_id, (n, value) in early.items():
        ev.report.ttl_on_live_jobs += 1
        end = ended_at.get(job_id)
        when = f"its end was committed at {end:.0f}" if end is not None else "it never ended"
        ev.report.violate(
            f"{labels.get(job_id, job_id)}: journal write {n} gave an item the TTL {value}, "
            f"earlier than retention allows ({when})"
        )
