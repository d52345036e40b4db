"""Progress, as the server's write journal shows it: which job committed what, and when.

The driver's deadlines follow progress, not wall time (a busy machine makes every job slow, and
slow is not stuck): ``Progress`` tails the journal the server writes (``chaos.server``) and keeps,
per job, the time of its last commit into its log (its creation counts, so does every event) and
of its last retention write (``expires_at``). A wave is *stalled* when none of its jobs
committed for the stall window; a job still open at the end is *stuck* if its own last commit
is older than that window, *slow* otherwise (``JobProgress.verdict``). The window is the driver's
``stall_window_s`` or, on a machine so busy that a due tick waits longer, ``STALL_PACES`` times the
run's *pace* (``Progress.pace``: how long a tick that was due at once took to be picked up), up to
``ChaosOptions.max_stall_window_s`` (600 s).

The tail reads only whole lines past its last offset, so a line the server is still writing is read
on the next poll.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aetheris_infra.chaos.journal import SlotWrite, protocol_writes, ttl_writes

STALL_PACES = 4.0  # a stall window is at least this many times the run's pace


@dataclass
class JobProgress:
    """What the journal showed of one job: its commits and retention writes (server clock)."""

    commits: int = 0
    last_commit_t: float = 0.0
    last_event: str | None = None
    last_seq: int = -1
    retention_writes: int = 0
    last_retention_t: float = 0.0

    def verdict(self, at: float, stall_window_s: float) -> str:
        """``stuck`` (no commit for the stall window), ``slow`` (committed within it), or ``never``."""
        if not self.commits:
            return "never"
        return "stuck" if at - self.last_commit_t >= stall_window_s else "slow"

    def describe(self, at: float, stall_window_s: float) -> str:
        verdict = self.verdict(at, stall_window_s)
        if verdict == "never":
            return "never committed anything"
        ago = at - self.last_commit_t
        return (
            f"{verdict}: last commit {ago:.0f} s before the end ({self.last_event} at seq {self.last_seq}, "
            f"{self.commits} commits; stall window {stall_window_s:.0f} s)"
        )


@dataclass
class Progress:
    """The journal, tailed: per-job progress, and when anything last moved."""

    journal: Path
    clock: Callable[[], float] = time.time
    jobs: dict[str, JobProgress] = field(default_factory=dict)
    lines: int = 0
    commits_seen: int = 0
    _offset: int = 0
    _partial: bytes = b""
    # Event-type observers: ``on_event(job_id, event_type)`` for each commit seen (cancel triggers).
    observers: list[Callable[[str, str], None]] = field(default_factory=list)
    # The run's pace: seconds from a StepCommitted to the first claim of the job's next slot.
    gaps: list[float] = field(default_factory=list)
    _step_commits: dict[tuple[str, int], float] = field(default_factory=dict)
    _claimed: set[tuple[str, int]] = field(default_factory=set)

    def poll(self) -> int:
        """Read what the server appended since the last poll; the number of new lines."""
        if not self.journal.exists():
            return 0
        with self.journal.open("rb") as handle:
            handle.seek(self._offset)
            chunk = handle.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        whole, _, self._partial = data.rpartition(b"\n")
        if not whole:
            return 0
        records = [json.loads(line) for line in whole.split(b"\n") if line.strip()]
        self.feed(records)
        return len(records)

    def feed(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        self.lines += len(records)
        slots, _ = protocol_writes(records)
        for write in slots:
            if write.ok and write.kind in ("commit", "create"):
                self._committed(write)
            elif write.ok and write.kind == "claim" and (write.job_id, write.seq) not in self._claimed:
                self._claimed.add((write.job_id, write.seq))
                committed = self._step_commits.pop((write.job_id, write.seq - 1), None)
                if committed is not None:
                    self.gaps.append(write.t - committed)
        for ttl in ttl_writes(records):
            if ttl.ok:
                job = self.jobs.setdefault(ttl.job_id, JobProgress())
                job.retention_writes += 1
                job.last_retention_t = max(job.last_retention_t, ttl.t)

    def _committed(self, write: SlotWrite) -> None:
        job = self.jobs.setdefault(write.job_id, JobProgress())
        job.commits += 1
        self.commits_seen += 1
        if write.seq >= job.last_seq:
            job.last_seq, job.last_event = write.seq, write.event_type
        job.last_commit_t = max(job.last_commit_t, write.t)
        if write.event_type == "StepCommitted":
            self._step_commits[(write.job_id, write.seq)] = write.t
        for observe in self.observers:
            observe(write.job_id, write.event_type or "")

    def pace(self, quantile: float = 0.9) -> float:
        """A quantile of ``gaps`` (0 before any): how long a due tick takes to be picked up."""
        ordered = sorted(self.gaps)
        return ordered[int(quantile * (len(ordered) - 1))] if ordered else 0.0

    def last_move(self, job_ids: Iterable[str]) -> float:
        """The latest commit or retention write of any of ``job_ids`` (0 if none moved yet)."""
        moves = [
            max(p.last_commit_t, p.last_retention_t) for j in job_ids if (p := self.jobs.get(j)) is not None
        ]
        return max(moves, default=0.0)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return {job_id: vars(p).copy() for job_id, p in self.jobs.items()}
