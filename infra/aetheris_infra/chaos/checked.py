"""What the checker's parts share: each job as the run left it (``CheckedJob``), and the run's
evidence indexed once (``Evidence``: real calls by key, the journal's protocol moves, faults by
process).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from aetheris import Event, EventType, JobStatus
from aetheris_infra.chaos.journal import EFFECT_PREFIX, LedgerWrite, SlotWrite, cancel_writes, protocol_writes
from aetheris_infra.chaos.observations import Observations
from aetheris_infra.chaos.plan import JobPlan
from aetheris_infra.chaos.report import ChaosReport

TERMINAL = {EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED}
TERMINAL_TYPES = {t.value for t in TERMINAL}


@dataclass
class CheckedJob:
    plan: JobPlan
    job_id: str
    item: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    open_claims: list[int] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)
    slots: list[dict[str, Any]] = field(default_factory=list)  # every log slot item, as scanned
    inbox: list[dict[str, Any]] = field(default_factory=list)
    branch_slots: list[dict[str, Any]] = field(default_factory=list)  # its fan-outs' branch slots
    child: CheckedJob | None = None  # the child job it started (``ctx.child``), as the run left it
    others: list[dict[str, Any]] = field(default_factory=list)  # the job's other items (its input)
    segments: list[dict[str, Any]] = field(default_factory=list)  # its log segments (also in others)

    @property
    def status(self) -> JobStatus | None:
        return JobStatus(self.item["status"]) if self.item else None

    @property
    def ended(self) -> bool:
        return self.status is not None and self.status.is_terminal

    def label(self) -> str:
        return f"job {self.plan.index} ({self.plan.variant}, {self.job_id})"

    def error(self) -> dict[str, Any]:
        text = self.item.get("error") if self.item else None
        return json.loads(text) if text else {}

    def named(self, event_type: EventType, name: str) -> list[Event]:
        return [e for e in self.events if e.type is event_type and e.name == name]

    def effect(self, step: str, effect: str, index: int = 0) -> dict[str, Any] | None:
        """The ledger item of the ``index``-th ``effect`` call of the step named ``step``."""
        for item in self.effects:
            step_id, name, position = str(item["sk"])[len(EFFECT_PREFIX) :].rsplit("#", 2)
            if step_id.split("-", 1)[-1] == step and name == effect and position == str(index):
                return item
        return None

    def recorded_each(self, step: str, effect: str) -> list[Any]:
        """What the first ``effect`` call of every step named ``step`` recorded, by position (a
        step that ran once per run of a continued job)."""
        found = []
        for item in self.effects:
            step_id, name, position = str(item["sk"])[len(EFFECT_PREFIX) :].rsplit("#", 2)
            at, _, step_name = step_id.partition("-")
            if step_name == step and name == effect and position == "0":
                result = json.loads(item["result"]) if item.get("state") == "RECORDED" else None
                found.append((int(at), result))
        return [result for _, result in sorted(found)]

    def recorded(self, step: str, effect: str, index: int = 0) -> Any:
        entry = self.effect(step, effect, index)
        return json.loads(entry["result"]) if entry and entry.get("state") == "RECORDED" else None


@dataclass
class Evidence:
    """The run's records, indexed for the checks."""

    obs: Observations
    report: ChaosReport
    jobs: list[CheckedJob]
    slots: list[SlotWrite]
    ledger: list[LedgerWrite]
    calls: dict[str, list[dict[str, Any]]]  # key → real calls that answered (ok)
    attempts: dict[str, list[dict[str, Any]]]  # key → every real call, answered or not, by time
    faults_by_pid: dict[int, list[dict[str, Any]]]
    first_cancel: dict[str, int]  # job id → journal position of the write that asked it to stop
    commit_at: dict[tuple[str, int], int]  # (job id, seq) → journal position of the slot's commit

    @classmethod
    def of(cls, obs: Observations, report: ChaosReport, jobs: list[CheckedJob]) -> Evidence:
        slots, ledger = protocol_writes(obs.journal)
        calls: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        attempts: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for line in obs.external:
            attempts[str(line["key"])].append(line)
            if line.get("ok"):
                calls[str(line["key"])].append(line)
        for made in attempts.values():
            made.sort(key=lambda c: float(c.get("t", 0.0)))
        by_pid: defaultdict[int, list[dict[str, Any]]] = defaultdict(list)
        for fault in obs.faults:
            if fault.get("pid") is not None:
                by_pid[int(fault["pid"])].append(fault)
        first_cancel: dict[str, int] = {}
        for n, job_id in cancel_writes(obs.journal):
            first_cancel.setdefault(job_id, n)
        commit_at = {(w.job_id, w.seq): w.n for w in slots if w.kind == "commit" and w.ok}
        return cls(
            obs,
            report,
            jobs,
            slots,
            ledger,
            dict(calls),
            dict(attempts),
            dict(by_pid),
            first_cancel,
            commit_at,
        )

    def real_calls(self, job: CheckedJob, effect: str) -> list[dict[str, Any]]:
        return [
            c
            for key, made in self.calls.items()
            if key.startswith(f"{job.job_id}:")
            for c in made
            if c["effect"] == effect
        ]


def same(a: Any, b: Any) -> bool:
    """Equal as JSON values, NaN equal to NaN (a value kept exactly is equal to itself)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return bool(type(a) is type(b) and a == b) or (
        isinstance(a, int | float) and isinstance(b, int | float) and a == b
    )
