"""Each job's end against the reference its plan gives: what a fault-free run of the same plan ends
with, and returns.

The reference (``expected_result``) is computed from the plan and what the driver was answered:
the signal payloads the runtime accepted, the input it accepted (an odd ``note`` it refused is
replaced by none), and for every tool's part of the result the answer the ledger recorded — which
``check_effects`` holds to a real call of that tool. The outcome a plan allows:

* ``ok`` and ``flaky`` orders complete; ``reject`` orders fail with ``Rejected``; any order may fail
  with ``EffectOutcomeUnknown`` when its AT_MOST_ONCE charge was cut off (never recorded);
* an order with a bare ``except:`` may instead fail with an error that names the ``except``, and
  one with a fan-out with an error that names its tool (a call that is not the recorded one);
* a cancelled order (a cancel accepted) ends ``CANCELLED`` — or, if the cancel came too late to
  stop it, as it would have ended anyway: a job whose next slot was loaded before the cancel was
  written can end; one whose last operation began after the cancel cannot complete.

A failed or cancelled job has each committed compensable step undone exactly once, in reverse
order, and nothing undone that was not committed. A job still open at the end is lost, and said to
be *stuck* (no commit for the stall window) or *slow* (still committing).
"""

from __future__ import annotations

import json
from typing import Any

from aetheris import EventType, JobStatus
from aetheris_infra.chaos.app import LINK_ANSWER, MEMO, RECIPIENTS, SIGNALS
from aetheris_infra.chaos.checked import CheckedJob, Evidence, same
from aetheris_infra.chaos.progress import JobProgress
from aetheris_infra.chaos.workload import odd_value

# Compensable step → (its compensation, the tool the compensation calls); order.refund adds charge.
UNDO = {"reserve": ("undo-reserve", "inventory.release"), "charge": ("undo-charge", "payments.refund")}


def check_outcome(job: CheckedJob, ev: Evidence) -> None:
    r = ev.report
    status = job.status
    if status is None or not status.is_terminal:
        r.lost += 1
        progress = JobProgress(**ev.obs.progress.get(job.job_id, {}))
        at = ev.obs.wave_ends.get(job.job_id, progress.last_commit_t)
        how = progress.describe(at, ev.obs.limits.stall_window_s)
        verdict = progress.verdict(at, ev.obs.limits.stall_window_s)
        r.stuck += verdict != "slow"
        r.slow += verdict == "slow"
        r.violate(f"{job.label()} is lost: {status.value if status else 'no job item'} at the end, {how}")
        return
    cancel_n = _first_cancel(job, ev)
    if cancel_n is not None:
        r.cancels_landed += 1
    error_type = str(job.error().get("type", ""))
    if status is JobStatus.COMPLETED:
        _completed(job, ev, cancel_n)
    elif status is JobStatus.CANCELLED:
        if cancel_n is None:
            return _wrong(job, ev, "ended CANCELLED, but nobody asked for its cancel")
        r.cancelled += 1
        _compensated(job, ev)
    elif job.plan.variant == "reject" and error_type.endswith(".Rejected"):
        if ev.real_calls(job, "payments.charge"):
            r.violate(f"{job.label()}: a rejected order was charged")
        r.failed_rejected += 1
        _compensated(job, ev)
    elif error_type.endswith(".EffectOutcomeUnknown"):
        charge = job.effect("charge", "payments.charge")
        if charge is None or charge.get("state") == "RECORDED":
            return _wrong(job, ev, "failed with EffectOutcomeUnknown but its charge was recorded")
        r.failed_outcome_unknown += 1
        _compensated(job, ev)
    elif job.plan.order.bare_except and "except" in str(job.error().get("message", "")):
        r.failed_swallowing += 1  # the runtime refused the swallowed suspension, by name
        _compensated(job, ev)
    elif job.plan.order.fanout and "mail.fanout" in str(job.error().get("message", "")):
        r.failed_identity += 1  # the runtime refused a call that is not the one it recorded, by name
        _compensated(job, ev)
    else:
        message = str(job.error().get("message", ""))[:300]
        _wrong(job, ev, f"ended {status.value}: {error_type} {message}")


def _completed(job: CheckedJob, ev: Evidence, cancel_n: int | None) -> None:
    r = ev.report
    if job.plan.variant == "reject":
        return _wrong(job, ev, "a rejected order completed")
    if cancel_n is not None:
        before_last = _commit_n(job, ev, len(job.events) - 2)
        if before_last is not None and cancel_n < before_last:
            return _wrong(
                job,
                ev,
                f"completed, but its cancel (journal write {cancel_n}) came before its last "
                f"operation began (the slot before its end was committed at write {before_last})",
            )
        r.cancels_too_late += 1
    if any(e.type is EventType.COMPENSATION_COMMITTED for e in job.events):
        r.violate(f"{job.label()}: completed, yet a compensation ran")
    runs = [e for e in job.events if e.type is EventType.CONTINUED_AS_NEW]
    if len(runs) != job.plan.order.runs or int((job.item or {}).get("run", 1)) != len(runs) + 1:
        return _wrong(job, ev, f"continued as new {len(runs)} times, run {(job.item or {}).get('run')}")
    actual = ev.obs.results.get(job.job_id, _stored_result(job))
    if job.plan.order.fanout and isinstance(actual, dict):
        _check_fanout(job, ev, actual.get("fanout") or {})
    expected = expected_result(job, ev)
    if not same(actual, expected):
        r.result_mismatches += 1
        return _wrong(job, ev, f"result differs from the reference: {_differences(actual, expected)}")
    r.completed += 1


def expected_result(job: CheckedJob, ev: Evidence) -> dict[str, Any]:
    """What a fault-free run of this job's plan returns, its tools' parts as the ledger recorded them."""
    order = job.plan.order
    payloads = _accepted_payloads(job, ev)
    steps = [f"work-{i}" for i in range(order.work_steps)]
    probe = ev.obs.input_probes.get(job.plan.index)
    note = order.note if probe is None or probe.get("verdict") == "accepted" else None
    return {
        "reserved": job.recorded("reserve", "inventory.reserve"),
        "approval": payloads.get("approve"),
        "shipping": payloads.get("ship"),
        "work": [f"{job.recorded(s, 'quote')}|{job.recorded(s, '$uuid')}" for s in steps],
        "charged": job.recorded("charge", "payments.charge"),
        "notified": job.recorded("notify", "mail.send"),
        "note": note,
        "memo": payloads.get(MEMO) if order.memo else None,
        "fanout": _recorded_fanout(job, ev) if order.fanout else None,
        "audit": job.recorded("audit", "audit.log") if order.bare_except else None,
        "quotes": [job.recorded(f"quotes.{b}", "quote.branch") for b in range(order.branches)]
        if order.branches
        else None,
        "child": job.child.recorded("child_work", "child.work") if order.child and job.child else None,
        "ticks": job.recorded_each("run_tick", "run.tick") if order.runs else None,
        "runs": order.runs or None,
        "link": LINK_ANSWER if order.link else None,
    }


def _accepted_payloads(job: CheckedJob, ev: Evidence) -> dict[str, Any]:
    """Signal name → the payload the runtime accepted first (an odd one, or its plain fallback)."""
    payloads: dict[str, Any] = {}
    for send in ev.obs.signals:
        if send.job_index == job.plan.index and send.accepted and send.name not in payloads:
            payloads[send.name] = odd_value(send.probe) if send.probe else send.payload  # type: ignore[arg-type]
    for name in (*SIGNALS, MEMO):
        payloads.setdefault(name, None)
    return payloads


def _recorded_fanout(job: CheckedJob, ev: Evidence) -> dict[str, Any]:
    """The fan-out's recorded answers, each under the recipient of the real call that gave it."""
    by_answer = {c["result"]: c.get("arg") for c in ev.real_calls(job, "mail.fanout")}
    answers = [job.recorded("fan-out", "mail.fanout", i) for i in range(len(RECIPIENTS))]
    return {str(by_answer.get(a, f"?{i}")): a for i, a in enumerate(answers)}


def _check_fanout(job: CheckedJob, ev: Evidence, fanout: dict[str, str]) -> None:
    """Each recipient got the answer of a real call made *for that recipient* (calls matched by identity)."""
    r = ev.report
    calls = {c["result"]: c for c in ev.real_calls(job, "mail.fanout")}
    served = {c.get("arg") for c in calls.values()}
    for who in RECIPIENTS:
        answer = fanout.get(who)
        call = calls.get(answer)
        if call is None:
            r.identity_mismatches += 1
            r.violate(f"{job.label()}: fan-out recipient {who} got {answer!r}, which no call answered")
        elif call.get("arg") != who:
            r.identity_mismatches += 1
            r.violate(
                f"{job.label()}: fan-out recipient {who} got the answer of a call for {call.get('arg')}"
            )
        if who not in served:
            r.violate(f"{job.label()}: fan-out recipient {who} was never served")


def _compensated(job: CheckedJob, ev: Evidence) -> None:
    """Each committed compensable step undone exactly once, in reverse order; nothing else undone."""
    r = ev.report
    compensable = ["reserve", *(["charge"] if job.plan.order.refund else [])]
    problems = []
    order = []
    for step in compensable:
        undo, tool = UNDO[step]
        committed = bool(job.named(EventType.STEP_COMMITTED, step))
        undone = job.named(EventType.COMPENSATION_COMMITTED, undo)
        if committed and len(undone) != 1:
            problems.append(f"step {step} was committed and undone {len(undone)} times")
        elif committed and not ev.real_calls(job, tool):
            problems.append(f"{undo} committed but {tool} was never called")
        elif not committed and (undone or ev.real_calls(job, tool)):
            problems.append(f"{undo} ran though step {step} was never committed")
        if undone:
            order.append((undone[0].seq, step))
    steps_in_undo_order = [step for _, step in sorted(order)]
    if steps_in_undo_order != [s for s in reversed(compensable) if s in steps_in_undo_order]:
        problems.append(f"compensations ran in the order {steps_in_undo_order}, not in reverse")
    for problem in problems:
        r.compensation_violations += 1
        r.violate(f"{job.label()}: {problem}")
    if not problems and order:
        r.compensations_run += 1


def _first_cancel(job: CheckedJob, ev: Evidence) -> int | None:
    """The journal position of the write that asked the job to stop (None: never asked)."""
    if not job.item or not job.item.get("cancel_requested_at"):
        return None
    return ev.first_cancel.get(job.job_id, 0)


def _commit_n(job: CheckedJob, ev: Evidence, position: int) -> int | None:
    if position < 1 or position >= len(job.events):
        return None
    return ev.commit_at.get((job.job_id, job.events[position].seq))


def _stored_result(job: CheckedJob) -> Any:
    text = job.item.get("result") if job.item else None
    return json.loads(text) if isinstance(text, str) else text


def _wrong(job: CheckedJob, ev: Evidence, why: str) -> None:
    ev.report.wrong_outcome += 1
    ev.report.violate(f"{job.label()}: {why}")


def _differences(actual: Any, expected: dict[str, Any]) -> str:
    if not isinstance(actual, dict):
        return f"{_short(actual)} is not a result"
    fields = sorted(set(actual) | set(expected))
    diff = [
        f"{k}: {_short(actual.get(k), 160)} (reference {_short(expected.get(k), 160)})"
        for k in fields
        if not same(actual.get(k), expected.get(k))
    ]
    return "; ".join(diff)


def _short(value: Any, limit: int = 400) -> str:
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
