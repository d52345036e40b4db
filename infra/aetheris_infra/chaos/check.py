"""The chaos run's checker: what the store, the journal and the external ledger say, against the plan.

``check(observations)`` is a pure function of what a run left behind (``Observations``): the jobs
table and the inbox as scanned at the end, the server's write journal, the external ledger of real
tool calls, the fault log and what the driver planned and sent. It fills a ``ChaosReport`` with the
figures and one line per violation. Because it is pure, tests plant violations in a copy of a real
run's observations and check that they are caught.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aetheris import CRASH_POINTS, Event, EventType, JobStatus
from aetheris_infra.chaos.app import TOOLS
from aetheris_infra.chaos.journal import EFFECT_PREFIX, EVENT_PREFIX, LedgerWrite, SlotWrite, protocol_writes
from aetheris_infra.chaos.plan import JobPlan
from aetheris_infra.chaos.report import ChaosReport

TERMINAL = {EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED}
_STATUS_OF = {
    EventType.JOB_COMPLETED: JobStatus.COMPLETED,
    EventType.JOB_FAILED: JobStatus.FAILED,
    EventType.JOB_CANCELLED: JobStatus.CANCELLED,
}
_SETTLING = {
    EventType.STEP_COMMITTED,
    EventType.COMPENSATION_COMMITTED,
    EventType.SIGNAL_CONSUMED,
    EventType.WAIT_TIMED_OUT,
    EventType.TIMER_FIRED,
    *TERMINAL,
}


@dataclass
class SignalSend:
    """One planned signal (one ``signal_id``) and what became of the driver's sends of it."""

    job_index: int
    job_id: str
    name: str
    signal_id: str
    payload: dict[str, Any]
    early: bool
    sends: int = 0
    accepted: bool = False  # at least one send was answered with the signal id (the API's 202)
    refused: int = 0  # sends refused because the job had ended (JobFinished)


@dataclass
class Observations:
    seed: int
    workers: int
    plans: list[JobPlan]
    job_ids: dict[int, str]  # plan index → job id, for the jobs that were started
    signals: list[SignalSend]
    items: list[dict[str, Any]]  # the jobs table at the end
    inbox: list[dict[str, Any]]  # the inbox table at the end
    external: list[dict[str, Any]]  # the external ledger
    faults: list[dict[str, Any]]  # the fault log
    journal: list[dict[str, Any]]  # the server's write journal
    dlq: dict[str, int] = field(default_factory=dict)
    processes_spawned: int = 0
    duration_s: float = 0.0

    def save(self, path: str | Path) -> None:
        """Everything the checker read, as one JSON document (kept with a failed run's files)."""
        data = asdict(self)
        data["plans"] = [{**asdict(plan), "order": plan.order.model_dump()} for plan in self.plans]
        Path(path).write_text(json.dumps(data, default=str), encoding="utf-8")


@dataclass
class _Job:
    plan: JobPlan
    job_id: str
    item: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    open_claims: list[int] = field(default_factory=list)
    effects: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> JobStatus | None:
        return JobStatus(self.item["status"]) if self.item else None

    def label(self) -> str:
        return f"job {self.plan.index} ({self.plan.variant}, {self.job_id})"


def check(obs: Observations) -> ChaosReport:
    report = ChaosReport(
        seed=obs.seed,
        workers=obs.workers,
        duration_s=obs.duration_s,
        jobs_planned=len(obs.plans),
        processes_spawned=obs.processes_spawned,
        dlq=dict(obs.dlq),
    )
    jobs = _jobs(obs, report)
    calls = _calls_by_key(obs.external)
    slots, ledger = protocol_writes(obs.journal)
    _count_faults(obs, report)
    _check_fences(slots, ledger, jobs, report)
    for job in jobs:
        _check_log(job, report)
        _check_outcome(job, calls, obs, report)
    _check_effects(jobs, obs.external, calls, report)
    _check_signals(jobs, obs, report)
    return report


def _jobs(obs: Observations, report: ChaosReport) -> list[_Job]:
    by_pk: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in obs.items:
        by_pk[str(item["pk"])].append(item)
    jobs = []
    for plan in obs.plans:
        job_id = obs.job_ids.get(plan.index)
        if job_id is None:
            report.violate(f"job {plan.index} was never started")
            continue
        report.jobs_started += 1
        job = _Job(plan, job_id)
        for item in sorted(by_pk.get(job_id, []), key=lambda i: str(i["sk"])):
            sk = str(item["sk"])
            if sk.startswith(EVENT_PREFIX) and item.get("state") == "COMMITTED":
                job.events.append(Event.from_item(item))
            elif sk.startswith(EVENT_PREFIX):
                job.open_claims.append(int(item["seq"]))
            elif sk.startswith(EFFECT_PREFIX):
                job.effects.append(item)
            else:
                job.item = item
        jobs.append(job)
    return jobs


def _count_faults(obs: Observations, report: ChaosReport) -> None:
    report.faults = dict(Counter(str(f["kind"]) for f in obs.faults))
    report.surfaced_errors = sum(1 for f in obs.faults if f.get("surfaced"))
    hits = Counter(str(f["point"]) for f in obs.faults if f["kind"] == "crash_point")
    report.crash_points = {point: hits[point] for point in CRASH_POINTS}


def _check_fences(
    slots: list[SlotWrite], ledger: list[LedgerWrite], jobs: list[_Job], report: ChaosReport
) -> None:
    """No commit by a fence lower than the slot's highest claim; one commit per slot; no stale record."""
    claims: defaultdict[tuple[str, int], list[int]] = defaultdict(list)
    commits: defaultdict[tuple[str, int], list[SlotWrite]] = defaultdict(list)
    for write in slots:
        if write.kind == "claim" and write.ok and write.fence is not None:
            claims[(write.job_id, write.seq)].append(write.fence)
        elif write.kind == "commit" and write.ok:
            commits[(write.job_id, write.seq)].append(write)
        elif write.kind == "commit":
            report.fenced_out_writes += 1
    report.slot_claims = sum(len(f) for f in claims.values())
    report.max_claims_per_slot = max((len(f) for f in claims.values()), default=0)
    for (job_id, seq), done in commits.items():
        report.commits += len(done)
        if len(done) > 1:
            report.double_commits += 1
            report.violate(f"{job_id}: slot {seq} committed {len(done)} times")
        top = max(claims.get((job_id, seq), [0]))
        for commit in done:
            if commit.fence is None or commit.fence < top or commit.fence not in claims[(job_id, seq)]:
                report.stale_fence_commits += 1
                report.violate(
                    f"{job_id}: slot {seq} committed by {commit.worker_id} with fence {commit.fence}, "
                    f"but the slot was claimed up to fence {top}"
                )
    for job in jobs:
        for event in job.events[1:]:
            done = commits.get((job.job_id, event.seq), [])
            if not any(c.fence == event.fence for c in done):
                report.violate(
                    f"{job.label()}: event {event.seq} has no commit with its fence in the journal"
                )
    latest: dict[tuple[str, str], tuple[int | None, int | None]] = {}
    for effect in ledger:
        key = (effect.job_id, effect.sk)
        claimant = (effect.claim_seq, effect.claim_fence)
        if effect.kind == "claim" and effect.ok:
            latest[key] = claimant
        elif effect.kind in ("record", "fail") and not effect.ok:
            report.fenced_out_writes += 1
        elif effect.kind in ("record", "fail") and latest.get(key) != claimant:
            report.stale_ledger_records += 1
            report.violate(
                f"{effect.job_id}: {effect.sk} {effect.kind}ed by a claimant that was not the latest"
            )


def _check_log(job: _Job, report: ChaosReport) -> None:
    problems = []
    seqs = [e.seq for e in job.events]
    if seqs != list(range(len(seqs))):
        problems.append(f"sequence numbers are not contiguous from 0: {seqs}")
    if job.events and job.events[0].type is not EventType.JOB_CREATED:
        problems.append("the log does not start with JobCreated")
    if job.status is not None and job.status.is_terminal:
        ends = [e for e in job.events if e.type in TERMINAL]
        if len(ends) != 1 or job.events[-1] is not ends[0]:
            problems.append(f"{len(ends)} terminal events, the last event is {job.events[-1].type.value}")
        elif _STATUS_OF[ends[0].type] is not job.status:
            problems.append(f"the job item says {job.status.value}, the log ends {ends[0].type.value}")
        if job.open_claims:
            problems.append(f"open claims on slots {job.open_claims} after the job ended")
    settled: Counter[int] = Counter()
    committed_steps: Counter[str] = Counter()
    for event in job.events:
        final_failure = event.type is EventType.STEP_FAILED and event.next_attempt_at is None
        if event.op is not None and (event.type in _SETTLING or final_failure):
            settled[event.op] += 1
        if event.type is EventType.STEP_COMMITTED and event.step_id:
            committed_steps[event.step_id] += 1
    problems += [f"operation {op} settled {n} times" for op, n in settled.items() if n > 1]
    problems += [f"step {s} committed {n} times" for s, n in committed_steps.items() if n > 1]
    for problem in problems:
        report.log_violations += 1
        report.violate(f"{job.label()}: {problem}")


def _check_outcome(
    job: _Job, calls: dict[str, list[dict[str, Any]]], obs: Observations, r: ChaosReport
) -> None:
    status = job.status
    if status is None or not status.is_terminal:
        r.lost += 1
        r.violate(f"{job.label()} is lost: {status.value if status else 'no job item'} at the end")
        return
    error = json.loads(job.item["error"]) if job.item and job.item.get("error") else {}
    error_type = str(error.get("type", ""))
    charge = _effect(job, "charge", "payments.charge")
    if job.plan.variant == "reject":
        if status is not JobStatus.FAILED or not error_type.endswith(".Rejected"):
            return _wrong(job, r, f"a rejected order ended {status.value} {error_type}")
        if _real_calls(calls, job, "payments.charge"):
            r.violate(f"{job.label()}: a rejected order was charged")
        r.failed_rejected += 1
    elif status is JobStatus.COMPLETED:
        expected = _expected_result(job, obs)
        actual = json.loads(job.item["result"]) if job.item else None
        if actual != expected:
            r.result_mismatches += 1
            return _wrong(job, r, f"result {actual} is not the recorded one {expected}")
        r.completed += 1
        return
    elif status is JobStatus.FAILED and error_type.endswith(".EffectOutcomeUnknown"):
        if charge is None or charge.get("state") == "RECORDED":
            return _wrong(job, r, "failed with EffectOutcomeUnknown but its charge was recorded")
        r.failed_outcome_unknown += 1
    else:
        return _wrong(job, r, f"ended {status.value}: {error_type} {error.get('message', '')}")
    if not any(e.type is EventType.COMPENSATION_COMMITTED and e.name == "undo-reserve" for e in job.events):
        r.violate(f"{job.label()}: failed without its compensation (undo-reserve) committed")
    elif not _real_calls(calls, job, "inventory.release"):
        r.violate(f"{job.label()}: its compensation committed but the release was never called")
    else:
        r.compensations_run += 1


def _wrong(job: _Job, report: ChaosReport, why: str) -> None:
    report.wrong_outcome += 1
    report.violate(f"{job.label()}: {why}")


def _expected_result(job: _Job, obs: Observations) -> dict[str, Any]:
    payloads = {s.name: s.payload for s in obs.signals if s.job_index == job.plan.index}

    def recorded(step: str, effect: str) -> Any:
        entry = _effect(job, step, effect)
        return json.loads(entry["result"]) if entry and entry.get("state") == "RECORDED" else None

    steps = [f"work-{i}" for i in range(job.plan.order.work_steps)]
    return {
        "reserved": recorded("reserve", "inventory.reserve"),
        "approval": payloads.get("approve"),
        "shipping": payloads.get("ship"),
        "work": [f"{recorded(s, 'quote')}|{recorded(s, '$uuid')}" for s in steps],
        "charged": recorded("charge", "payments.charge"),
        "notified": recorded("notify", "mail.send"),
    }


def _effect(job: _Job, step: str, effect: str) -> dict[str, Any] | None:
    """The ledger item of the first ``effect`` call of the step named ``step``."""
    for item in job.effects:
        step_id, name, index = str(item["sk"])[len(EFFECT_PREFIX) :].rsplit("#", 2)
        if step_id.split("-", 1)[-1] == step and name == effect and index == "0":
            return item
    return None


def _calls_by_key(external: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    calls: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for line in external:
        if line.get("ok"):
            calls[str(line["key"])].append(line)
    return calls


def _real_calls(calls: dict[str, list[dict[str, Any]]], job: _Job, effect: str) -> list[dict[str, Any]]:
    return [
        c
        for key, made in calls.items()
        if key.startswith(f"{job.job_id}:")
        for c in made
        if c["effect"] == effect
    ]


def _check_effects(
    jobs: list[_Job], external: list[dict[str, Any]], calls: dict[str, list[dict[str, Any]]], r: ChaosReport
) -> None:
    keys_of_call: defaultdict[tuple[str, str, str], set[str]] = defaultdict(set)
    for line in external:
        keys_of_call[(str(line["job"]), str(line["step"]), str(line["effect"]))].add(str(line["key"]))
    for (job_id, step, effect), keys in keys_of_call.items():
        if len(keys) > 1:
            r.key_mismatches += 1
            r.violate(f"{job_id}: {effect} in step {step} was called with {len(keys)} different keys")
    known: set[str] = set()
    calls_by_semantics: Counter[str] = Counter()
    keys_by_semantics: Counter[str] = Counter()
    for job in jobs:
        for entry in job.effects:
            if "semantics" not in entry:
                continue  # a recorded value (sctx.uuid()), not a tool call
            key, semantics, effect = (
                str(entry["idempotency_key"]),
                str(entry["semantics"]),
                str(entry["effect"]),
            )
            known.add(key)
            made = calls.get(key, [])
            keys_by_semantics[semantics] += 1
            calls_by_semantics[semantics] += len(made)
            if TOOLS.get(effect) is None or TOOLS[effect].value != semantics:
                r.violate(f"{job.label()}: {key} recorded as {semantics}, the tool is {TOOLS.get(effect)}")
            if any(c["effect"] != effect or c["job"] != job.job_id for c in made):
                r.key_mismatches += 1
                r.violate(f"{job.label()}: key {key} was used by another effect or job")
            if semantics == "AT_MOST_ONCE" and len(made) > 1:
                r.amo_duplicates += 1
                r.violate(f"{job.label()}: AT_MOST_ONCE {key} was called {len(made)} times")
            elif semantics == "AT_LEAST_ONCE" and len(made) > 1:
                r.alo_repeated_keys += 1
            if entry.get("state") == "RECORDED":
                recorded = json.loads(str(entry["result"]))
                if not made or recorded not in {c["result"] for c in made}:
                    r.result_mismatches += 1
                    r.violate(f"{job.label()}: {key} recorded {recorded!r}, which no real call answered")
            elif job.status is JobStatus.COMPLETED:
                r.violate(f"{job.label()} completed with {key} still {entry.get('state')}")
    for key in calls:
        if key not in known:
            r.calls_without_claim += 1
            r.violate(f"{key} was called with no ledger entry for it")
    r.effect_keys = dict(keys_by_semantics)
    r.effect_calls = dict(calls_by_semantics)


def _ended(status: JobStatus | None) -> bool:
    return status is not None and status.is_terminal


def _check_signals(jobs: list[_Job], obs: Observations, r: ChaosReport) -> None:
    consumed: dict[str, Counter[str]] = {}
    reached: dict[str, set[str]] = {}
    for job in jobs:
        ids: Counter[str] = Counter()
        names = set()
        for event in job.events:
            if event.type is EventType.SIGNAL_CONSUMED:
                ids[str(event.detail.get("signal_id"))] += 1
            if event.type in (EventType.SIGNAL_CONSUMED, EventType.WAIT_STARTED):
                names.add(str(event.detail.get("signal")))
        consumed[job.job_id], reached[job.job_id] = ids, names
    status = {job.job_id: job.status for job in jobs}
    inbox = {(str(i["pk"]), str(i["sk"])) for i in obs.inbox}
    sent = {(s.job_id, s.signal_id) for s in obs.signals}
    for send in obs.signals:
        r.signal_sends_refused += send.refused
        if not send.accepted:
            continue
        r.signals_accepted += 1
        times = consumed.get(send.job_id, Counter())[send.signal_id]
        where = f"job {send.job_index}: signal {send.name} ({send.signal_id})"
        if (send.job_id, send.signal_id) not in inbox:
            r.violate(f"{where} was accepted but is not in the inbox")
        if times == 1:
            r.signals_consumed += 1
        elif times > 1:
            r.signals_consumed_twice += 1
            r.violate(f"{where} was consumed {times} times")
        elif _ended(status.get(send.job_id)) and send.name not in reached.get(send.job_id, set()):
            r.signals_unneeded += 1
        else:
            r.signals_lost += 1
            r.violate(f"{where} was accepted and never consumed")
    for job_id, ids in consumed.items():
        for signal_id in ids:
            if (job_id, signal_id) not in sent:
                r.violate(f"{job_id} consumed a signal nobody sent: {signal_id}")
