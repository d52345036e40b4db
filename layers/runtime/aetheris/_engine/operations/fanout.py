"""Fan-out (``ctx.map`` / ``ctx.parallel``) as a durable operation of the job.

In the job's log it is two events: ``FanOutStarted`` (the branch list: count, names, concurrency,
completion rule; the job parks, ``WAITING`` on ``fan-out <name>``) and ``FanOutJoined`` (the batch:
every branch's outcome). Between them the branches run, each a durable step on invocations of
its own, committing into its own slots (``_store/branches.py``) — never into the job's log — so
concurrent branches never contend on one item. A branch's invocation replays the job function up
to this operation and runs its one branch (``branch_invocation.py``); the branch that ends last
sends the job's join tick (``branch_ticks.py``), and the join tick records the batch.

Replay returns the batch from ``FanOutJoined`` alone: whatever order the branches finished in,
the job sees the same results. A branch list that differs from the recorded one (count, names)
is a divergence, named.

A cancel stops the branches (none is started or retried after it); the job's stop is committed
once every started branch has settled, with the batch, so the compensations of the branches that
committed run like those of any step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from aetheris import _serde
from aetheris._clock import to_millis
from aetheris._engine.come_back import ComeBack
from aetheris._engine.control import Abort
from aetheris._engine.fanout_rule import FanOutSpec, decide, join_reason
from aetheris._engine.history import OpRecord
from aetheris._engine.operations.base import Operation, OperationHost
from aetheris._engine.operations.step import StepOp
from aetheris._engine.saga import Compensation
from aetheris._engine.store_io import runtime_io
from aetheris._store.branches import Branches, BranchStore
from aetheris._store.queue import Tick
from aetheris.errors import ErrorInfo, NondeterminismError, rebuild_error
from aetheris.events import Event, EventType, JobStatus, OpKind
from aetheris.fanout import BatchItem, BatchResult, BranchStatus, CompletionReason, FanOutFailed
from aetheris.policy import RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


class Branch:
    """One branch: what it runs, and its undo function if the job later fails."""

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], undo: Callable[..., Any] | None = None
    ) -> None:
        self.fn, self.args, self.undo = fn, args, undo


class FanOutOp(Operation[Any]):
    kind = OpKind.FANOUT

    def __init__(
        self,
        record: OpRecord,
        spec: FanOutSpec,
        branches: list[Branch],
        retry: RetryPolicy | None,
        timeout: timedelta | None,
    ) -> None:
        super().__init__(record)
        self.spec, self.branches = spec, branches
        self.retry, self.timeout = retry, timeout
        self.started = record.first(EventType.FAN_OUT_STARTED)
        # Once the branches run, a cancel is handled here (after they settle), not in place of it.
        self.abortable = self.started is None

    def run(self, host: OperationHost) -> Any:
        if self.started is not None:
            self._check_same_branches(host)
        outcome = self.record.outcome
        stopped = (EventType.CANCEL_REQUESTED, EventType.OPERATION_ABORTED)
        if outcome is not None and outcome.type in stopped and outcome.result:
            # Stopped after its branches settled: what they committed is undone like any step.
            self._register_undo(host, self._batch(outcome, host))
            raise Abort(cancelled=outcome.type is EventType.CANCEL_REQUESTED, error=outcome.error)
        return super().run(host)

    # -- replay -------------------------------------------------------------------------------

    def replayed(self, outcome: Event, host: OperationHost) -> Any:
        batch = self._batch(outcome, host)
        self._register_undo(host, batch)
        if self.spec.completion is not None:
            if not batch.completed:
                raise FanOutFailed(self.spec.name, batch)
            return batch
        if batch.first_failure is not None:
            error = batch.items[batch.first_failure].error
            raise rebuild_error(error or ErrorInfo(type="Unknown", message="no error recorded"))
        return [item.result for item in batch.items]

    def _batch(self, outcome: Event, host: OperationHost) -> BatchResult:
        with runtime_io():
            raw = json.loads(host.payloads.text(outcome.result) or "{}")
        items = []
        for entry in raw.get("items", []):
            index = int(entry["index"])
            result = entry.get("result")
            if entry.get("status") == BranchStatus.SUCCEEDED and index < len(self.branches):
                adapter = _serde.return_adapter(self.branches[index].fn)
                result = adapter.validate_python(result)
            items.append(BatchItem.model_validate({**entry, "result": result}))
        return BatchResult(
            items=items, reason=CompletionReason(raw["reason"]), first_failure=raw.get("first_failure")
        )

    def _register_undo(self, host: OperationHost, batch: BatchResult) -> None:
        for item in batch.succeeded:
            branch = self.branches[item.index]
            if branch.undo is not None:
                record = branch_record(self.record.index, self.spec, item.index)
                host.compensations.append(Compensation(record, branch.undo, branch.args, {}))

    def _check_same_branches(self, host: OperationHost) -> None:
        assert self.started is not None
        recorded = FanOutSpec.from_detail(self.started.detail)
        if recorded.names != self.spec.names:
            diverged = NondeterminismError(
                host.job_id,
                self.record.index,
                f"fan-out {recorded.name!r} of {recorded.count} branches {_short(recorded.names)}",
                f"fan-out {self.spec.name!r} of {self.spec.count} branches {_short(self.spec.names)}",
            )
            host.replay.diverged = diverged
            raise diverged

    # -- live ---------------------------------------------------------------------------------

    def execute(self, inv: Invocation) -> NoReturn:
        if inv.branch_target is not None:
            self._run_branch(inv, inv.branch_target[1])
        now = inv.clock.now()
        if self.started is None:
            event = inv.commit(
                EventType.FAN_OUT_STARTED,
                self.record,
                detail=self.spec.detail(),
                parked={"waiting_for": f"fan-out {self.name}", "due": None},
            )
            ticks = tuple(
                Tick(job_id=inv.job_id, seq=0, branch=f"{self.record.index}.{b}")
                for b in range(self.spec.initial)
            )
            inv.suspend(ComeBack(committed=event, also=ticks))
        with runtime_io():
            branches = BranchStore(inv.services.jobs.table).load(inv.job_id, self.record.index)
        reason = join_reason(self.spec, branches, bool(inv.cancel_requested_at))
        if reason is None:
            _resend_lost(inv, self.record.index, self.spec, branches)
            inv.suspend(ComeBack.when_woken())
        batch = _batch_of(self.spec, branches, reason, inv)
        text = inv.recorder.value(batch, _serde.ANY_ADAPTER, f"batch of fan-out {self.name}")
        summary = {
            "reason": reason.value,
            "succeeded": sum(1 for i in batch["items"] if i["status"] == BranchStatus.SUCCEEDED),
            "failed": sum(1 for i in batch["items"] if i["status"] == BranchStatus.FAILED),
        }
        if inv.crash_loop is not None:  # the join keeps killing its ticks: the job stops here
            status = JobStatus.COMPENSATING if self._has_undo(inv, batch) else JobStatus.RUNNING
            error = inv.recorder.error(inv.crash_loop)
            event = inv.commit(
                EventType.OPERATION_ABORTED,
                self.record,
                result=text,
                error=error,
                detail=summary,
                status=status,
            )
        elif reason is CompletionReason.CANCELLED:
            status = JobStatus.COMPENSATING if self._has_undo(inv, batch) else JobStatus.RUNNING
            detail = {"requested_at": inv.cancel_requested_at, **summary}
            event = inv.commit(
                EventType.CANCEL_REQUESTED, self.record, result=text, detail=detail, status=status
            )
        else:
            event = inv.commit(EventType.FAN_OUT_JOINED, self.record, result=text, detail=summary)
        inv.suspend(ComeBack.after_commit(event, now))

    def _has_undo(self, inv: Invocation, batch: dict[str, Any]) -> bool:
        succeeded = [i["index"] for i in batch["items"] if i["status"] == BranchStatus.SUCCEEDED]
        return bool(inv.compensations) or any(self.branches[i].undo is not None for i in succeeded)

    def _run_branch(self, inv: Invocation, index: int) -> NoReturn:
        """This invocation is branch ``index``'s: run its one attempt (or say why it does not run)."""
        branches = inv.branch_state
        assert branches is not None
        lane = branches.lane(index)
        record = branch_record(self.record.index, self.spec, index, lane.events)
        inv.branch_record = record
        now = inv.clock.now()
        decided = decide(self.spec, branches, bool(inv.cancel_requested_at))
        if decided is not None:  # the rule was decided meanwhile (or a cancel came): not run
            event = inv.commit(EventType.BRANCH_CANCELLED, record, detail={"reason": decided.value})
            inv.suspend(ComeBack.after_commit(event, now))
        if inv.crash_loop is not None:  # this branch keeps killing its ticks: it fails for good
            event = inv.commit(EventType.STEP_FAILED, record, error=inv.recorder.error(inv.crash_loop))
            inv.suspend(ComeBack.after_commit(event, now))
        branch = self.branches[index]
        StepOp(record, branch.fn, branch.args, {}, self.retry, self.timeout).execute(inv)


def branch_record(op: int, spec: FanOutSpec, index: int, events: list[Event] | None = None) -> OpRecord:
    """Branch ``index`` as an operation: named ``<fan-out>.<index>``, its step id from the fan-out's
    position, so its idempotency keys are its own and the same on every attempt and worker."""
    return OpRecord(op, OpKind.BRANCH, f"{spec.name}.{index}", list(events or []))


def _batch_of(
    spec: FanOutSpec, branches: Branches, reason: CompletionReason, inv: Invocation
) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    failures: list[tuple[str, int]] = []
    for b in range(spec.count):
        lane = branches.lane(b)
        last = lane.last
        if lane.succeeded and last is not None:
            with runtime_io():
                text = inv.payloads.text(last.result)
            items.append(
                {"index": b, "status": BranchStatus.SUCCEEDED.value, "result": json.loads(text or "null")}
            )
        elif lane.failed and last is not None:
            error = last.error or ErrorInfo(type="Unknown", message="no error recorded")
            items.append({"index": b, "status": BranchStatus.FAILED.value, "error": error.model_dump()})
            failures.append((last.at.isoformat(), b))
        else:
            items.append({"index": b, "status": BranchStatus.CANCELLED.value})
    first = min(failures)[1] if failures else None
    return {"items": items, "reason": reason.value, "first_failure": first}


def _resend_lost(inv: Invocation, op: int, spec: FanOutSpec, branches: Branches) -> None:
    """The job was ticked before its join (a cancel, a duplicate, the sweeper): send again the tick
    of any started branch that nobody holds and that is overdue, so a lost tick cannot wedge it."""
    now_ms = to_millis(inv.clock.now())
    stall_ms = int(inv.services.settings.stall_after.total_seconds() * 1000)
    for b in range(spec.count):
        lane = branches.lane(b)
        if not branches.started(b, spec.initial) or lane.settled:
            continue
        claim = lane.claim
        if (
            claim is not None
            and claim.get("state") == "CLAIMED"
            and int(claim.get("lease_until", 0)) >= now_ms
        ):
            continue
        last = lane.last
        since = to_millis(last.next_attempt_at or last.at) if last is not None else None
        if since is not None and now_ms - since < stall_ms:
            continue
        with runtime_io():
            inv.services.queue.send(Tick(job_id=inv.job_id, seq=lane.next_seq, branch=f"{op}.{b}"))


def _short(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:5])
    return f"[{shown}{', ...' if len(names) > 5 else ''}]"
