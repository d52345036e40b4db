"""A fan-out branch's invocation: replay the job function up to its fan-out, run that one branch.

The job function is re-run from the top against the job's log, exactly as for the job's own ticks
(so the branch callables exist: they are closures of the job function). Operations before the
fan-out return their recorded outcomes; the fan-out, finding this invocation's target, runs the
one branch as a step whose outcome is committed into the branch's own slot — never the job's log
or the job item. Anything else that would commit (the job function ending before it reaches the
fan-out, an operation it would run live, a divergence) fails the branch for good instead: the job's
own join tick then meets the same divergence and fails the job with it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from aetheris._engine.come_back import ComeBack
from aetheris._engine.commit import build_event
from aetheris._engine.fanout_rule import FanOutSpec
from aetheris._engine.history import OpRecord
from aetheris._engine.invocation import Invocation
from aetheris._engine.operations.base import Operation
from aetheris._engine.store_io import runtime_io
from aetheris._store.branches import Branches
from aetheris.errors import ErrorInfo, NondeterminismError
from aetheris.events import Event, EventType, JobStatus, OpKind


class BranchInvocation(Invocation):
    def __init__(self, *args: Any, op: int, branch: int, spec: FanOutSpec, branches: Branches, **kw: Any):
        super().__init__(*args, **kw)
        self.branch_target = (op, branch)
        self.branch_state = branches
        self.spec = spec

    def live(self, op: Operation[Any]) -> Invocation:
        assert self.branch_target is not None
        if op.record.index != self.branch_target[0] or op.kind is not OpKind.FANOUT:
            raise self._diverged(f"{op.kind.value} {op.name!r} to run live")
        return self

    def _returned(self, output: Any) -> NoReturn:
        if self.halted is not None:
            super()._returned(output)
        self._branch_failed(self._diverged("the job function to return"))

    def _failed(self, error: BaseException) -> NoReturn:
        self._branch_failed(error)

    def _end_failed(self, error: BaseException) -> NoReturn:
        self._branch_failed(error)

    def _diverged(self, requested: str) -> NondeterminismError:
        assert self.branch_target is not None
        position = self.branch_target[0]
        return NondeterminismError(self.job_id, position, f"fan-out {self.spec.name!r}", requested)

    def _branch_failed(self, error: BaseException) -> NoReturn:
        """The branch cannot run as the log describes it: it fails for good, and says why."""
        record = self.branch_record or self._own_record()
        event = self.commit(EventType.STEP_FAILED, record, error=self.recorder.error(error))
        self.suspend(ComeBack.after_commit(event, self.clock.now()))

    def _own_record(self) -> OpRecord:
        from aetheris._engine.operations.fanout import branch_record

        assert self.branch_target is not None and self.branch_state is not None
        op, branch = self.branch_target
        return branch_record(op, self.spec, branch, self.branch_state.lane(branch).events)

    def commit(
        self,
        event_type: EventType,
        op: OpRecord | None,
        *,
        started: datetime | None = None,
        result: str | None = None,
        error: ErrorInfo | None = None,
        next_attempt_at: datetime | None = None,
        detail: dict[str, Any] | None = None,
        parked: dict[str, Any] | None = None,
        status: JobStatus | None = None,
        event_extra: dict[str, Any] | None = None,
        job_extra: dict[str, Any] | None = None,
    ) -> Event:
        """Fill the branch's claimed slot (one fenced write; the job item is never touched, so
        ``job_extra`` — a continue's, which no branch makes — does not apply)."""
        assert self.branch_target is not None
        if op is None or op.kind is not OpKind.BRANCH:
            op = self.branch_record or self._own_record()
            if event_type not in (EventType.STEP_FAILED, EventType.BRANCH_CANCELLED):
                event_type, error = (
                    EventType.STEP_FAILED,
                    error or ErrorInfo.of(self._diverged(event_type.value)),
                )
        now = self.clock.now()
        event = build_event(self, event_type, op, now, started, result, error, next_attempt_at, detail)
        event |= {"step_id": op.step_id, "branch": self.branch_target[1], "op_kind": OpKind.BRANCH.value}
        event |= event_extra or {}
        self.services.faults.reach("before_commit")
        with runtime_io():
            self.services.log.commit(self.lease, event)
        self.services.faults.reach("after_commit")
        self.services.telemetry.operation(OpKind.BRANCH.value, now - (started or now))
        stored = {k: v for k, v in event.items() if v is not None}
        stored |= {"state": "COMMITTED", "fence": self.lease.fence, "worker_id": self.lease.worker_id}
        self.committed = Event.from_item(stored)
        return self.committed
