"""The chaos run's checker: what the store, the journal and the external ledger say, against the plan.

``check(observations)`` is a pure function of what a run left behind (``Observations``): the jobs
table and the inbox as scanned at the end, the server's write journal, the external ledger of real
tool calls, the fault log and what the driver planned and sent. It fills a ``ChaosReport`` with the
figures and one line per violation. Because it is pure, tests plant violations in a copy of a real
run's observations and check that they are caught.

Its parts: here the log and the fence (no stale or double commit, a well-formed log per job);
``check_outcomes`` each job's end against the reference its plan gives (results, cancels and
compensations, odd values, slow or stuck); ``check_effects`` the tools (at most once, repeats
explained by faults, calls matched by identity) and the signals; ``check_hygiene`` timers,
retention and the dead-letter queues.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from aetheris import CRASH_POINTS, Event, EventType
from aetheris._store.schema import SEGMENT_PREFIX, TTL_ATTRIBUTE
from aetheris._store.segments import decode
from aetheris_infra.chaos.check_effects import check_effects, check_signals
from aetheris_infra.chaos.check_hygiene import check_hygiene
from aetheris_infra.chaos.check_outcomes import check_outcome
from aetheris_infra.chaos.checked import TERMINAL, CheckedJob, Evidence
from aetheris_infra.chaos.journal import EFFECT_PREFIX, EVENT_PREFIX, LedgerWrite, SlotWrite
from aetheris_infra.chaos.observations import Observations, SignalSend
from aetheris_infra.chaos.report import ChaosReport

__all__ = ["Observations", "SignalSend", "check"]
_STATUS_OF = {
    EventType.JOB_COMPLETED: "COMPLETED",
    EventType.JOB_FAILED: "FAILED",
    EventType.JOB_CANCELLED: "CANCELLED",
}
_SETTLING = {
    EventType.STEP_COMMITTED,
    EventType.COMPENSATION_COMMITTED,
    EventType.SIGNAL_CONSUMED,
    EventType.WAIT_TIMED_OUT,
    EventType.TIMER_FIRED,
    *TERMINAL,
}


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
    evidence = Evidence.of(obs, report, jobs)
    _count_faults(obs, report)
    _check_fences(evidence.slots, evidence.ledger, jobs, report)
    for job in jobs:
        _check_log(job, report)
        check_outcome(job, evidence)
    check_effects(evidence)
    check_signals(evidence)
    check_hygiene(evidence)
    return report


def _jobs(obs: Observations, report: ChaosReport) -> list[CheckedJob]:
    by_pk: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in obs.items:
        by_pk[str(item["pk"])].append(item)
    inbox: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in obs.inbox:
        inbox[str(item["pk"])].append(item)
    by_key = {str(i.get("idempotency_key")): i for i in obs.items if i["sk"] == "EW#JOB"}
    jobs = []
    for plan in obs.plans:
        job_id = obs.job_ids.get(plan.index)
        if job_id is None:
            stored = by_key.get(plan.idempotency_key)
            probe = obs.input_probes.get(plan.index, {})
            why = f" (its start was answered {probe.get('verdict')}: {probe.get('error')})" if probe else ""
            held = f", yet the store holds it as {stored['status']}" if stored else ""
            report.violate(f"job {plan.index} was never started{why}{held}")
            continue
        report.jobs_started += 1
        job = _loaded(CheckedJob(plan, job_id, inbox=inbox.get(job_id, [])), by_pk)
        started = [e for e in job.events if e.type is EventType.CHILD_STARTED]
        if started:  # its child job: checked for its calls and its result
            child_id = str(started[0].detail["child_id"])
            job.child = _loaded(CheckedJob(plan, child_id, inbox=inbox.get(child_id, [])), by_pk)
        jobs.append(job)
    return jobs


def _loaded(job: CheckedJob, by_pk: dict[str, list[dict[str, Any]]]) -> CheckedJob:
    for item in sorted(by_pk.get(job.job_id, []), key=lambda i: str(i["sk"])):
        sk = str(item["sk"])
        if sk.startswith("EU#"):
            job.branch_slots.append(item)
            continue
        if sk.startswith(EVENT_PREFIX):
            job.slots.append(item)
        if sk.startswith(EVENT_PREFIX) and item.get("state") == "COMMITTED":
            job.events.append(Event.from_item(item))
        elif sk.startswith(EVENT_PREFIX):
            job.open_claims.append(int(item["seq"]))
        elif sk.startswith(EFFECT_PREFIX):
            job.effects.append(item)
        elif sk == "EW#JOB":
            job.item = item
        else:
            job.others.append(item)  # the input item, the log's segments
            if sk.startswith(SEGMENT_PREFIX):
                job.segments.append(item)
    return job


def _count_faults(obs: Observations, report: ChaosReport) -> None:
    report.faults = dict(Counter(str(f["kind"]) for f in obs.faults))
    report.surfaced_errors = sum(1 for f in obs.faults if f.get("surfaced"))
    hits = Counter(str(f["point"]) for f in obs.faults if f["kind"] == "crash_point")
    report.crash_points = {point: hits[point] for point in CRASH_POINTS}
    moments: Counter[str] = Counter(c.moment for c in obs.cancels if c.verdict == "accepted")
    moments.update(str(a["cancel"]) for a in obs.cancel_asks if a.get("outcome") == "accepted")
    report.cancels_by_moment = dict(moments)
    report.cancels_sent = sum(moments.values())


def _check_fences(
    slots: list[SlotWrite], ledger: list[LedgerWrite], jobs: list[CheckedJob], report: ChaosReport
) -> None:
    """No commit by a fence lower than the slot's highest claim; one commit per slot; no stale record."""
    claims: defaultdict[tuple[str, int], list[int]] = defaultdict(list)
    commits: defaultdict[tuple[str, int], list[SlotWrite]] = defaultdict(list)
    granted: set[tuple[str, int]] = set()
    for write in slots:
        if write.kind == "claim" and write.ok and write.fence is not None:
            claims[(write.job_id, write.seq)].append(write.fence)
        elif write.kind == "commit" and write.ok:
            commits[(write.job_id, write.seq)].append(write)
            if write.grants_next:  # the grant is the next slot's first holder, fence 1
                granted.add((write.job_id, write.seq + 1))
        elif write.kind == "commit":
            report.fenced_out_writes += 1
    report.slot_claims = sum(len(f) for f in claims.values())
    report.max_claims_per_slot = max((len(f) for f in claims.values()), default=0)
    for (job_id, seq), done in commits.items():
        report.commits += len(done)
        if len(done) > 1:
            report.double_commits += 1
            report.violate(f"{job_id}: slot {seq} committed {len(done)} times")
        held = claims.get((job_id, seq), []) + ([1] if (job_id, seq) in granted else [])
        top = max(held, default=0)
        for commit in done:
            if commit.fence is None or commit.fence < top or commit.fence not in held:
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


def _check_log(job: CheckedJob, report: ChaosReport) -> None:
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
        elif _STATUS_OF[ends[0].type] != job.status.value:
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
    problems += _segment_problems(job)
    for problem in problems:
        report.log_violations += 1
        report.violate(f"{job.label()}: {problem}")


def _segment_problems(job: CheckedJob) -> list[str]:
    """Each log segment (derived data, written by whichever worker committed a run's last event,
    zombies included) must hold exactly the committed slots it covers, as stored."""
    stored = {
        int(s["seq"]): {k: v for k, v in s.items() if k != TTL_ATTRIBUTE}
        for s in job.slots
        if s.get("state") == "COMMITTED"
    }
    problems = []
    for segment in job.segments:
        data = segment.get("data")
        blob = getattr(data, "value", data)
        if not isinstance(blob, bytes):
            continue  # observations loaded from a file keep only a summary of binary values
        try:
            events = decode(job.job_id, blob)
        except (ValueError, KeyError, TypeError) as bad:
            problems.append(f"segment {segment['sk']} does not decode: {bad}")
            continue
        wrong = [int(e["seq"]) for e in events if stored.get(int(e["seq"])) != e]
        if wrong:
            problems.append(f"segment {segment['sk']} disagrees with the log at seqs {wrong[:5]}")
    return problems
