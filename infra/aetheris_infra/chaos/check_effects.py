"""The tools and the signals: what the external ledger and the inbox say against the runtime's records.

* Every real call has a ledger claim under its key, with the tool's semantics; a key is used by one
  tool of one job; a recorded result is the answer of a real call with that key.
* AT_MOST_ONCE: a key called at most once.
* AT_LEAST_ONCE: a key may be called again, but only when something explains it (``_explained``):
  the earlier call raised and its failure was recorded (a retry is due); or one of the two callers'
  processes died (crash point, SIGKILL) or was paused (zombie) between a lease before the first
  call and the second; or the first caller met an injected error that outlasted its client's
  retries (its record failed); or another worker claimed the job's slot in that window (the first
  caller's lease ran out). A repeat nothing explains is a violation: a tool called again and again
  without a fault is a runtime that cannot record.
* Signals: each accepted signal (a 202) is in the inbox and consumed exactly once (or was never
  needed: its job ended before it waited for it); an odd payload is refused at once or accepted —
  never a server error.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from typing import Any

from aetheris import EventType, JobStatus
from aetheris_infra.chaos.app import TOOLS
from aetheris_infra.chaos.checked import CheckedJob, Evidence

SLACK_S = 0.05  # clocks of the processes and the server are one clock; lines are written a bit late
LEASE_WINDOW_S = 10.0  # a lease (3 s) and its margin, and more: how long before a call its claim was
_DEATHS = {"crash_point", "sigkill", "zombie"}


def check_effects(ev: Evidence) -> None:
    r = ev.report
    keys_of_call: defaultdict[tuple[str, str, str, str], set[str]] = defaultdict(set)
    for line in ev.obs.external:
        where = (str(line["job"]), str(line["step"]), str(line["effect"]), str(line.get("arg")))
        keys_of_call[where].add(str(line["key"]))
    for (job_id, step, effect, _), keys in keys_of_call.items():
        if len(keys) > 1:
            r.key_mismatches += 1
            r.violate(f"{job_id}: {effect} in step {step} was called with {len(keys)} different keys")
    known: set[str] = set()
    calls_by_semantics: Counter[str] = Counter()
    keys_by_semantics: Counter[str] = Counter()
    children = [job.child for job in ev.jobs if job.child is not None]
    for job in [*ev.jobs, *children]:
        for entry in job.effects:
            if "semantics" not in entry:
                continue  # a recorded value (sctx.uuid()), not a tool call
            key, semantics, effect = (
                str(entry["idempotency_key"]),
                str(entry["semantics"]),
                str(entry["effect"]),
            )
            known.add(key)
            made = ev.calls.get(key, [])
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
            elif semantics == "AT_LEAST_ONCE":
                _bound_repeats(job, key, str(entry["sk"]), ev)
            if entry.get("state") == "RECORDED":
                recorded = json.loads(str(entry["result"]))
                if not made or recorded not in {c["result"] for c in made}:
                    r.result_mismatches += 1
                    r.violate(f"{job.label()}: {key} recorded {recorded!r}, which no real call answered")
            elif job.status is JobStatus.COMPLETED:
                r.violate(f"{job.label()} completed with {key} still {entry.get('state')}")
    for key in ev.attempts:
        if key not in known:
            r.calls_without_claim += 1
            r.violate(f"{key} was called with no ledger entry for it")
    r.effect_keys = dict(keys_by_semantics)
    r.effect_calls = dict(calls_by_semantics)


def _bound_repeats(job: CheckedJob, key: str, sk: str, ev: Evidence) -> None:
    """Every call of an AT_LEAST_ONCE key after its first is explained by a fault or a recorded failure."""
    r = ev.report
    made = ev.attempts.get(key, [])
    if len(made) < 2:
        return
    if len(ev.calls.get(key, [])) > 1:
        r.alo_repeated_keys += 1
    failures = sum(
        1 for w in ev.ledger if w.sk == sk and w.job_id == job.job_id and w.kind == "fail" and w.ok
    )
    unexplained = 0
    for earlier, later in itertools.pairwise(made):
        if not earlier.get("ok") and failures > 0:
            failures -= 1  # the call raised, its failure is recorded: the retry is the policy's
            r.alo_repeats_explained += 1
        elif _explained(earlier, later, job, ev):
            r.alo_repeats_explained += 1
        else:
            unexplained += 1
    if unexplained:
        r.alo_repeats_unexplained += unexplained
        r.violate(
            f"{job.label()}: AT_LEAST_ONCE {key} was called {len(made)} times, {unexplained} of them "
            "with no fault or recorded failure to explain the repeat"
        )


def _explained(earlier: dict[str, Any], later: dict[str, Any], job: CheckedJob, ev: Evidence) -> bool:
    # From a lease before the first call (its caller claimed the slot, then may have been paused
    # before calling) to the second call.
    start, end = float(earlier.get("t", 0.0)) - LEASE_WINDOW_S, float(later.get("t", 0.0)) + SLACK_S
    first, second = int(earlier.get("pid", -1)), int(later.get("pid", -1))
    for pid in {first, second}:
        for fault in ev.faults_by_pid.get(pid, []):
            at = float(fault.get("t", 0.0))
            if start <= at <= end and (fault["kind"] in _DEATHS or (pid == first and fault.get("surfaced"))):
                return True
    name = ev.obs.process_names.get(first)
    return any(
        w.job_id == job.job_id and w.kind == "claim" and w.ok and w.worker_id != name and start <= w.t <= end
        for w in ev.slots
    )


def check_signals(ev: Evidence) -> None:
    r = ev.report
    consumed: dict[str, Counter[str]] = {}
    reached: dict[str, set[str]] = {}
    for job in ev.jobs:
        ids: Counter[str] = Counter()
        names = set()
        for event in job.events:
            if event.type is EventType.SIGNAL_CONSUMED:
                ids[str(event.detail.get("signal_id"))] += 1
            if event.type in (EventType.SIGNAL_CONSUMED, EventType.WAIT_STARTED):
                names.add(str(event.detail.get("signal")))
        consumed[job.job_id], reached[job.job_id] = ids, names
    status = {job.job_id: job.status for job in ev.jobs}
    inbox = {(str(i["pk"]), str(i["sk"])) for i in ev.obs.inbox}
    sent = {(s.job_id, s.signal_id) for s in ev.obs.signals}
    for send in ev.obs.signals:
        r.signal_sends_refused += send.refused
        where = f"job {send.job_index}: signal {send.name} ({send.signal_id})"
        if send.probe is not None:
            r.odd_values[f"signal:{send.probe}:{send.verdict}"] = (
                r.odd_values.get(f"signal:{send.probe}:{send.verdict}", 0) + 1
            )
            # A job cancelled (or ended) before the probe was sent answers "finished": that is right.
            finished_job = send.verdict == "finished" and _ended(status.get(send.job_id))
            if send.verdict not in ("accepted", "refused") and not finished_job:
                r.violate(f"{where}: the odd payload ({send.probe}) got {send.verdict}: {send.error}")
        if not send.accepted:
            continue
        r.signals_accepted += 1
        times = consumed.get(send.job_id, Counter())[send.signal_id]
        if (send.job_id, send.signal_id) not in inbox:
            r.violate(f"{where} was accepted but is not in the inbox")
        if times == 1:
            r.signals_consumed += 1
        elif times > 1:
            r.signals_consumed_twice += 1
            r.violate(f"{where} was consumed {times} times")
        elif _ended(status.get(send.job_id)) and (
            send.name not in reached.get(send.job_id, set()) or status.get(send.job_id) is JobStatus.CANCELLED
        ):
            # Never waited for, or the job was cancelled while it waited: a cancel takes effect at
            # the operation it finds, a wait whose signal has arrived included.
            r.signals_unneeded += 1
        else:
            r.signals_lost += 1
            r.violate(f"{where} was accepted and never consumed")
    for job_id, ids in consumed.items():
        for signal_id in ids:
            if (job_id, signal_id) not in sent:
                r.violate(f"{job_id} consumed a signal nobody sent: {signal_id}")
    for index, probe in ev.obs.input_probes.items():
        label = f"input:{probe['kind']}:{probe['verdict']}"
        r.odd_values[label] = r.odd_values.get(label, 0) + 1
        if probe["verdict"] not in ("accepted", "refused"):
            r.violate(
                f"job {index}: the odd input ({probe['kind']}) got {probe['verdict']}: {probe['error']}"
            )


def _ended(status: JobStatus | None) -> bool:
    return status is not None and status.is_terminal
