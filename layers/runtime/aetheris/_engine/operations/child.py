"""A child job (``ctx.child``, a sub-agent) as a durable operation of its parent.

Live, first: the child job is created — idempotently, its id derived from the parent's id and the
operation's position, so a redelivered or taken-over tick finds the same child — carrying the
parent's tenant and where to wake it (``parent_id``, ``parent_seq``); then ``ChildStarted`` parks
the parent (``WAITING`` on ``child <id>``, no lease, no message) and the child's first tick goes out.
When the child ends, its worker sends the parent's tick (``worker.py``); the parent's tick reads the
child's job item and records ``ChildEnded`` with its result or error. Replay returns that result,
or raises ``ChildJobFailed`` — the parent's to catch.

Parking and waking cannot miss each other: the child's first tick is sent only after the parent's
``ChildStarted`` is committed, and the parent's tick after it looks at the child once more.

Parent-close policy (as Temporal's REQUEST_CANCEL): when the parent stops at this operation — it is
cancelled, or the operation keeps killing its ticks — it asks the child to cancel and does not wait
for it; the child runs its own compensations and ends ``CANCELLED``.
"""

from __future__ import annotations

import uuid
from contextlib import suppress
from typing import TYPE_CHECKING, Any, NoReturn

from aetheris._engine.come_back import ComeBack
from aetheris._engine.history import OpRecord
from aetheris._engine.operations.base import Operation, OperationHost
from aetheris._engine.store_io import runtime_io
from aetheris._store import watch
from aetheris._store.dynamo import ConditionFailed
from aetheris._store.queue import Tick
from aetheris._tenancy import DEFAULT_TENANT, TENANT_ATTRIBUTE
from aetheris._values import storable_json
from aetheris.errors import ChildJobFailed, ErrorInfo, Suspend
from aetheris.events import Event, EventType, JobStatus, OpKind

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation

_ID_NAMESPACE = uuid.UUID("6f1d3c52-8a0e-4d0b-9a57-2f6a1b0c9e41")


def child_id(parent_id: str, position: int) -> str:
    """The child's id: readable while it fits the id limit, else a uuid5 of the same two facts."""
    readable = f"{parent_id}.c{position}"
    return readable if len(readable) <= 128 else str(uuid.uuid5(_ID_NAMESPACE, readable))


class ChildOp(Operation[Any]):
    kind = OpKind.CHILD

    def __init__(self, record: OpRecord, job_type: str, input: Any) -> None:
        super().__init__(record)
        self.job_type, self.input = job_type, input
        started = record.first(EventType.CHILD_STARTED)
        self.child_id = str(started.detail["child_id"]) if started else None

    def replayed(self, outcome: Event, host: OperationHost) -> Any:
        if outcome.type is EventType.CHILD_ENDED and outcome.detail.get("status") == JobStatus.COMPLETED:
            with runtime_io():
                return host.payloads.json(outcome.result)
        error = outcome.error or ErrorInfo(type="Unknown", message="no error recorded")
        status = str(outcome.detail.get("status", "FAILED"))
        raise ChildJobFailed(str(outcome.detail.get("child_id")), status, error.type, error.message)

    def execute(self, inv: Invocation) -> NoReturn:
        now = inv.clock.now()
        if self.child_id is None:
            self.child_id = child_id(inv.job_id, self.record.index)
            self._create(inv, self.child_id)
            detail = {"child_id": self.child_id, "job_type": self.job_type}
            try:
                event = inv.commit(
                    EventType.CHILD_STARTED,
                    self.record,
                    detail=detail,
                    parked={"waiting_for": f"child {self.child_id}", "due": None},
                )
            except Suspend:  # a cancel came while parking: its stop was committed instead
                self.on_stop(inv)
                raise
            first = Tick(job_id=self.child_id, seq=1)
            inv.suspend(ComeBack(committed=event, after=None, also=(first,)))
        with runtime_io():
            child = inv.services.jobs.get(self.child_id)
        if child is None or not JobStatus(child["status"]).is_terminal:
            inv.suspend(ComeBack.when_woken())
        status = JobStatus(child["status"])
        error = ErrorInfo.model_validate_json(child["error"]) if child.get("error") else None
        if status is JobStatus.CANCELLED and error is None:
            error = ErrorInfo(type="aetheris.errors.JobFinished", message="the child job was cancelled")
        event = inv.commit(
            EventType.CHILD_ENDED,
            self.record,
            result=child.get("result") if status is JobStatus.COMPLETED else None,
            error=error if status is not JobStatus.COMPLETED else None,
            detail={"child_id": self.child_id, "status": status.value},
        )
        inv.suspend(ComeBack.after_commit(event, now))

    def _create(self, inv: Invocation, job_id: str) -> None:
        app = inv.app
        if app is None:
            raise RuntimeError("a child job can only be started by a worker")
        definition = app.get(self.job_type)
        value = definition.input.validate_python(self.input)
        payloads = inv.services.payloads
        text = storable_json(
            value, f"input of child job {self.job_type}", via=definition.input, limit=payloads.limit
        )
        settings, now = inv.services.settings, inv.clock.now()
        tenant = str(inv.snapshot.job.get(TENANT_ATTRIBUTE) or DEFAULT_TENANT)
        attention = watch.attention(
            job_id, JobStatus.PENDING, now, settings.stall_after, settings.sweep_shards
        )
        parent = {"parent_id": inv.job_id, "parent_seq": inv.lease.seq + 1, "parent_op": self.record.index}
        with runtime_io():
            stored = payloads.offload(job_id, text)
            existing = inv.services.jobs.create(
                job_id,
                self.job_type,
                definition.version,
                stored,
                now,
                None,
                None,
                attention,
                tenant,
                extra=parent,
            )
        if existing is not None and existing.get("parent_id") != inv.job_id:
            raise RuntimeError(f"job id {job_id} is taken by a job that is not this job's child")

    def on_stop(self, inv: Invocation) -> None:
        """Parent-close policy: ask the running child to cancel (its own saga runs), do not wait."""
        if self.child_id is None:
            return
        services, now = inv.services, inv.clock.now()
        look = watch.look_at(
            self.child_id, now + services.settings.stall_after, services.settings.sweep_shards
        )
        with runtime_io(), suppress(ConditionFailed):  # finished already: nothing to cancel
            item = services.jobs.request_cancel(self.child_id, now, look)
            if item is not None:
                services.queue.send(Tick(job_id=self.child_id, seq=int(item.get("last_seq", 0)) + 1))
