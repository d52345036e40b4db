"""A job's trace: what happened to it, operation by operation, read from its log and its effect ledger.

``build_trace(job, events, ledger)`` is a pure function — no store, no clock — so the HTTP API
(``GET /jobs/{job_id}/trace``), the CLI and the UI render the same ``Trace``. Each operation lists
its attempts (worker, fence, timings, outcome, error, next retry, slot takeover, warnings), the
ledger entries of its calls (idempotency key, semantics, state, claims, result or error), the
signal it consumed, its wait or timer and, for a compensation, the step it undid.

Every claim of a log slot that ran the operation is its own ``Attempt`` row. An attempt whose
worker died before committing left no event of its own; the slot item that took it over says who it
was (``reclaimed_from``), under which fence (the takeover's minus one) and, where the store keeps
them (``reclaimed_claimed_at``, ``reclaimed_lease_until`` on the slot item), when it claimed and
when its lease ran out. It becomes a ``crashed`` row, "lease expired, taken over by worker-2".
Claims the log cannot attribute (their worker is not recorded) are counted in ``unseen_claims``;
what the log cannot show, the trace does not invent. An operation known only from ledger entries
is one whose attempt is under way (or died) with no outcome yet: its state is ``running``, and the
open slot claim is its ``running`` attempt.

Values (results, payloads, tool inputs from the ledger's ``args_preview``) are redacted by key name
and cut to a preview (``aetheris._previews``). ``causes`` is the causal tree (``_trace_tree``):
job → operation → attempt → effect, the signal under the wait it released, links from a
compensation to the step it undoes and from a takeover to the crashed attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aetheris._clock import from_millis
from aetheris._engine.history import step_id
from aetheris._previews import DEFAULT_REDACT_KEYS, Values
from aetheris._store import schema
from aetheris._store.branches import BranchStore
from aetheris._store.jobs import JobStore
from aetheris._trace_attempts import (
    attach_open_claim,
    crashed_attempt,
    millis,
    slot_claim,
    unseen_claims,
    why_ended,
)
from aetheris._trace_models import (
    Attempt,
    CauseLink,
    CauseNode,
    Effect,
    Operation,
    OpState,
    SignalUse,
    SlotClaim,
    Timer,
    Totals,
    Trace,
    TraceError,
    Wait,
)
from aetheris._trace_tree import causes_of, filter_trace
from aetheris.errors import ErrorInfo
from aetheris.events import Event, EventType, JobStatus, OpKind
from aetheris.policy import EffectSemantics
from aetheris.runtime import JobView

if TYPE_CHECKING:
    from aetheris.runtime import Runtime

__all__ = [
    "Attempt",
    "CauseLink",
    "CauseNode",
    "Effect",
    "OpState",
    "Operation",
    "SignalUse",
    "SlotClaim",
    "Timer",
    "Totals",
    "Trace",
    "TraceError",
    "Wait",
    "build_trace",
    "filter_trace",
    "load_trace",
]

# Events that are one attempt of a step or compensation.
_ATTEMPTS = (EventType.STEP_COMMITTED, EventType.STEP_FAILED, EventType.COMPENSATION_COMMITTED)


def load_trace(
    runtime: Runtime,
    job_id: str,
    *,
    max_value_bytes: int | None = None,
    operation: str | None = None,
    effect: str | None = None,
) -> Trace | None:
    """The trace of job ``job_id`` as stored now (None if there is no such job): the job, its whole
    log and the open claim as a cold load reads them (the log's segments, then the events after
    them, in consistent Queries), then its ledger.

    The log is read past the runtime's cache of committed events: the cache holds events as their
    worker wrote them, while the stored slot items (and the segments, copied from them) also say
    when each claim was made and how many claims were given back, which the attempts need."""
    services = runtime.services
    snapshot = JobStore(services.jobs.table, segment_events=services.jobs.segment_events).load(job_id)
    if snapshot is None:
        return None
    resolve = services.payloads.resolve
    slots = [resolve(item) for item in snapshot.events]
    events = [Event.from_item(item) for item in slots]
    # A continued job's trace is its current run's: what earlier runs did is not this log's.
    start = events[0] if events and events[0].type is EventType.CONTINUED_AS_NEW else None
    base = start.op + 1 if start is not None and start.op is not None else 0
    branch_events = [Event.from_item(resolve(i)) for i in BranchStore(services.jobs.table).all(job_id)]
    branch_events = [e for e in branch_events if e.op is None or e.op >= base]
    ledger = [
        e for e in runtime.effects(job_id) if (schema.effect_position(str(e.get("sk", ""))) or 0) >= base
    ]
    trace = build_trace(
        JobView.from_item(resolve(snapshot.job)),
        events,
        ledger,
        claim=snapshot.claim,
        max_value_bytes=max_value_bytes,
        slots=slots,
        now=services.clock.now(),
        redact_keys=getattr(runtime.settings, "redact_keys", DEFAULT_REDACT_KEYS),
        branches=branch_events,
    )
    return filter_trace(trace, operation=operation, effect=effect)


def build_trace(
    job: JobView,
    events: Sequence[Event],
    ledger: Sequence[Mapping[str, Any]],
    *,
    claim: Mapping[str, Any] | None = None,
    max_value_bytes: int | None = None,
    slots: Sequence[Mapping[str, Any]] = (),
    now: datetime | None = None,
    redact_keys: Iterable[str] = DEFAULT_REDACT_KEYS,
    branches: Sequence[Event] = (),
) -> Trace:
    """The trace of ``job`` from its events (in seq order), its ledger items and the open slot claim.

    ``slots`` are the stored items of those events (claim times, claims given back, the claim taken
    over); without them a crashed attempt shows its worker and fence only. With ``now``, an open
    claim whose lease ran out is marked ``expired``. Values of keys named like secrets
    (``redact_keys``) are redacted; with ``max_value_bytes``, a value whose JSON is longer is
    replaced by ``{"truncated": true, "bytes": n, "preview": "..."}``. ``branches`` are the
    committed events of fan-out branches: each branch is an operation row after its fan-out.
    """
    values = Values(max_value_bytes, redact_keys)
    by_seq = {int(item["seq"]): item for item in slots if "seq" in item}
    ops: dict[int, Operation] = {}
    for event in events:
        if event.op is not None and event.op_kind is not None:
            op = ops.get(event.op) or ops.setdefault(event.op, _new_op(event.op, event.op_kind, event.name))
            _apply(op, event, values, by_seq.get(event.seq, {}))
    lanes: dict[tuple[int, int], Operation] = {}
    for event in branches:
        if event.op is None or event.branch is None:
            continue
        key = (event.op, event.branch)
        row = lanes.get(key) or lanes.setdefault(key, _new_op(event.op, OpKind.BRANCH, event.name))
        row.fan_out, row.branch = event.op, event.branch
        _apply(row, event, values, {})
    unmatched = _attach_effects(ops, ledger, job.status, values, lanes)
    operations = []
    for index in sorted(ops):
        operations.append(ops[index])
        operations.extend(lanes[key] for key in sorted(lanes) if key[0] == index)
    _pair_compensations(operations)
    open_claim = slot_claim(claim, now)
    attach_open_claim(operations, open_claim)
    end = events[-1] if events and events[-1].op_kind is OpKind.END else None
    attempts = [a for op in operations for a in op.attempts]
    tools = [e for op in operations for e in op.effects if e.kind == "tool"]
    return Trace(
        job_id=job.job_id,
        job_type=job.job_type,
        version=job.version,
        status=job.status,
        created_at=job.created_at,
        updated_at=job.updated_at,
        cancel_requested_at=job.cancel_requested_at,
        waiting_for=job.waiting_for,
        forked_from=job.forked_from,
        run=job.run,
        result=values.keep(job.result),
        error=TraceError.of(job.error),
        parent_id=job.parent_id,
        compensated=[str(name) for name in end.detail.get("compensated", [])] if end else [],
        operations=operations,
        open_claim=open_claim,
        unmatched_effects=unmatched,
        totals=Totals(
            operations=len(operations),
            attempts=sum(1 for a in attempts if a.outcome in ("committed", "failed")),
            failed_attempts=sum(1 for a in attempts if a.outcome == "failed"),
            retries=sum(1 for a in attempts if a.next_attempt_at is not None),
            takeovers=sum(1 for e in events if e.reclaimed_from is not None),
            effects=len(tools),
            effect_claims=sum(e.claims for e in tools),
            signals=sum(1 for op in operations if op.signal is not None),
            compensations=sum(1 for op in operations if op.kind is OpKind.COMPENSATE),
        ),
        last_seq=events[-1].seq if events else 0,
        causes=causes_of(job, operations),
    )


def _new_op(index: int, kind: OpKind, name: str | None) -> Operation:
    name = name or ""
    runs_body = kind in (OpKind.STEP, OpKind.COMPENSATE, OpKind.BRANCH)
    return Operation(
        index=index,
        kind=kind,
        name=name,
        step_id=step_id(index, name) if runs_body else None,
        state="running",
        seqs=[],
        started_at=None,
        ended_at=None,
        duration_ms=None,
    )


def _apply(op: Operation, event: Event, values: Values, slot: Mapping[str, Any]) -> None:
    """Fold one event of ``op`` into it (events come in seq order); ``slot`` is its stored item."""
    if not op.seqs:
        op.started_at = event.started_at or event.at
        op.recorded_values = [values.keep(v) for v in event.values]
    op.seqs.append(event.seq)
    claimed_at = millis(slot.get("claimed_at"))
    crashed = crashed_attempt(event, slot, claimed_at)
    if crashed is not None:
        op.attempts.append(crashed)
    op.unseen_claims += unseen_claims(event, slot)
    settled = True
    kind = event.type
    if kind in _ATTEMPTS:
        failed = kind is EventType.STEP_FAILED
        op.attempts.append(
            Attempt(
                attempt=event.attempt,
                seq=event.seq,
                worker_id=event.worker_id,
                fence=event.fence,
                started_at=event.started_at,
                ended_at=event.ended_at,
                duration_ms=event.duration_ms,
                outcome="failed" if failed else "committed",
                ended_because=why_ended(event),
                claimed_at=claimed_at,
                error=TraceError.of(event.error),
                next_attempt_at=event.next_attempt_at,
                reclaimed_from=event.reclaimed_from,
                warnings=[str(w) for w in event.detail.get("warnings", [])],
            )
        )
        settled = not (failed and event.next_attempt_at is not None)
        op.state = "committed" if not failed else "failed" if settled else "retrying"
    elif kind is EventType.WAIT_STARTED:
        # A wait's signal is its name; a step blocked on its budget names the raise signal.
        signal = str(event.detail.get("signal") or op.name)
        op.wait = Wait(signal=signal, deadline=_moment(event.detail.get("deadline")), parked_at=event.at)
        op.state, settled = "waiting", False
    elif kind is EventType.SIGNAL_CONSUMED:
        arrived = event.detail.get("arrived_at_ms")
        op.signal = SignalUse(
            name=str(event.detail.get("signal", op.name)),
            signal_id=str(event.detail.get("signal_id", "")),
            payload=values.load(event.result),
            arrived_at=from_millis(int(arrived)) if arrived is not None else None,
            consumed_at=event.at,
        )
        op.wait = op.wait or Wait(signal=op.name, deadline=None, parked_at=None)
        op.state = "signalled"
    elif kind is EventType.WAIT_TIMED_OUT:
        deadline = _moment(event.detail.get("deadline"))
        op.wait = (op.wait or Wait(signal=op.name, deadline=deadline, parked_at=None)).model_copy(
            update={"timed_out_at": event.at}
        )
        op.state = "timed_out"
    elif kind is EventType.TIMER_STARTED:
        op.timer = Timer(fire_at=_moment(event.detail["fire_at"]) or event.at, started_at=event.at)
        op.state, settled = "sleeping", False
    elif kind is EventType.TIMER_FIRED:
        op.timer = (op.timer or Timer(fire_at=event.at, started_at=event.at)).model_copy(
            update={"fired_at": event.at}
        )
        op.state = "fired"
    elif kind is EventType.FAN_OUT_STARTED:
        op.state, settled = "fanned_out", False
    elif kind is EventType.FAN_OUT_JOINED:
        op.state = "joined"
        op.result = dict(event.detail)
    elif kind is EventType.BRANCH_CANCELLED:
        op.state = "cancelled"  # never run (or not retried): the fan-out's rule was decided, or a cancel
    elif kind is EventType.CHILD_STARTED:
        op.child_id = str(event.detail.get("child_id"))
        op.state, settled = "child_running", False
    elif kind is EventType.CHILD_ENDED:
        op.child_id = str(event.detail.get("child_id"))
        op.state = "committed" if event.detail.get("status") == JobStatus.COMPLETED else "failed"
        op.result = values.load(event.result)
    elif kind is EventType.JOB_COMPLETED:
        op.state = "completed"
    elif kind in (EventType.JOB_CANCELLED, EventType.CANCEL_REQUESTED):
        op.state = "cancelled"  # CancelRequested: the cancel took effect here; the operation never ran
    elif kind is EventType.OPERATION_ABORTED:
        op.state = "aborted"  # its ticks kept dying or failing: the job stopped here
    else:  # JobFailed
        op.state = "failed"
    if kind in _ATTEMPTS or kind is EventType.JOB_COMPLETED:
        op.result = values.load(event.result)
    op.error = TraceError.of(event.error)
    op.ended_at = (event.ended_at or event.at) if settled else None
    if op.ended_at is not None and op.started_at is not None:
        op.duration_ms = int((op.ended_at - op.started_at).total_seconds() * 1000)
    else:
        op.duration_ms = None


def _attach_effects(
    ops: dict[int, Operation],
    ledger: Sequence[Mapping[str, Any]],
    status: JobStatus,
    values: Values,
    lanes: Mapping[tuple[int, int], Operation] | None = None,
) -> list[Effect]:
    """Give each ledger entry to the operation its key names; return the ones that name none."""
    unmatched: list[Effect] = []
    for item in ledger:
        parsed = _parse_effect_key(str(item.get(schema.SK, "")))
        if parsed is None:
            unmatched.append(_effect(item, str(item.get("effect", "")), 0, values))
            continue
        index, op_name, name, call = parsed
        lane = next((r for r in (lanes or {}).values() if r.step_id == step_id(index, op_name)), None)
        if lane is not None:
            lane.effects.append(_effect(item, name, call, values))
            continue
        op = ops.get(index)
        if op is None:
            # Claimed effects but no outcome yet: the step (or compensation) is running or died.
            kind = OpKind.COMPENSATE if status is JobStatus.COMPENSATING else OpKind.STEP
            op = ops[index] = _new_op(index, kind, op_name)
        if op.step_id != step_id(index, op_name):
            unmatched.append(_effect(item, name, call, values))
            continue
        op.effects.append(_effect(item, name, call, values))
    for op in [*ops.values(), *(lanes or {}).values()]:
        op.effects.sort(key=_effect_order)
    return unmatched


def _effect_order(effect: Effect) -> tuple[bool, float, str, int]:
    # Tool calls in the order they were claimed, then the recorded values.
    claimed = effect.claimed_at.timestamp() if effect.claimed_at else 0.0
    return effect.kind != "tool", claimed, effect.name, effect.call


def _parse_effect_key(sk: str) -> tuple[int, str, str, int] | None:
    """``FX#<index>-<op name>#<effect name>#<call>`` → its parts (names never contain ``#``)."""
    parts = sk.removeprefix(schema.EFFECT_PREFIX).split("#")
    if not sk.startswith(schema.EFFECT_PREFIX) or len(parts) != 3:
        return None
    op_step_id, name, call = parts
    index, _, op_name = op_step_id.partition("-")
    if not (index.isdigit() and call.isdigit()):
        return None
    return int(index), op_name, name, int(call)


def _effect(item: Mapping[str, Any], name: str, call: int, values: Values) -> Effect:
    error = item.get("error")
    semantics = item.get("semantics")
    claimed_at, recorded_at = item.get("claimed_at"), item.get("recorded_at")
    return Effect(
        kind="value" if name.startswith("$") else "tool",
        name=name,
        call=call,
        idempotency_key=item.get("idempotency_key"),
        semantics=EffectSemantics(semantics) if semantics else None,
        state=item["state"],
        claims=int(item.get("claims", 0)),
        worker_id=item.get("worker_id"),
        claimed_at=from_millis(int(claimed_at)) if claimed_at is not None else None,
        recorded_at=from_millis(int(recorded_at)) if recorded_at is not None else None,
        input=values.load(item.get("args_preview")),
        result=values.load(item.get("result")),
        error=TraceError.of(ErrorInfo.model_validate_json(error)) if error else None,
        claim_seq=_int(item.get("claim_seq")),
        claim_fence=_int(item.get("claim_fence")),
        claimed_by=item.get("claimed_by"),
    )


def _int(raw: Any) -> int | None:
    return None if raw is None else int(raw)


def _pair_compensations(operations: list[Operation]) -> None:
    """Link each ``undo-<name>`` compensation to the latest not yet undone step ``<name>`` before it.

    Compensations run in reverse order of the steps that registered them, so the latest match is right.
    """
    for comp in operations:
        if comp.kind is not OpKind.COMPENSATE:
            continue
        undone = comp.name.removeprefix("undo-")
        for step in reversed(operations[: operations.index(comp)]):
            if step.kind is OpKind.STEP and step.name == undone and step.compensated_by is None:
                step.compensated_by, comp.compensates = comp.index, step.index
                break


def _moment(raw: Any) -> datetime | None:
    return datetime.fromisoformat(str(raw)) if raw else None
