"""What one commit writes: the event item filling the claimed slot, and — when the job's status
changes or it parks — the job item's projection, in the same transaction.

Every value here has passed the recorder (``records.py``): results are stored texts, errors bounded
``ErrorInfo``. The terminal commit gives the job item and the terminal event their TTL, end +
retention; every other item carries its provisional TTL already (``_store/retention.py``). Only a job
from before provisional TTLs is marked for the old end-of-job pass. A live job's next look is capped
by its retention extension.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aetheris._store import schema, watch
from aetheris._store.jobs import status_attributes
from aetheris._store.retention import Lifetime, expires_at, pass_pending
from aetheris.errors import ErrorInfo
from aetheris.events import SCHEMA_VERSION, EventType, JobStatus, OpKind

if TYPE_CHECKING:
    from aetheris._engine.history import OpRecord
    from aetheris._engine.invocation import Invocation

# Job-item attributes that describe a parked job; removed when it moves on.
_PARKED_ATTRIBUTES = ("waiting_for", schema.DUE_INDEX_PK, schema.DUE_INDEX_SK)


def build_event(
    inv: Invocation,
    event_type: EventType,
    op: OpRecord | None,
    now: datetime,
    started: datetime | None,
    result: str | None,
    error: ErrorInfo | None,
    next_attempt_at: datetime | None,
    detail: dict[str, Any] | None,
) -> dict[str, Any]:
    first_of_op = op is not None and not op.events
    values = list(op.new_values) if op is not None and first_of_op else []
    return {
        "job_id": inv.job_id,
        "seq": inv.lease.seq,
        "type": event_type.value,
        "at": now.isoformat(),
        "attempt": inv.attempt,
        "op": op.index if op else None,
        "op_kind": op.kind.value if op else None,
        "name": op.name if op else None,
        "step_id": op.step_id if op and op.kind is OpKind.STEP else None,
        "started_at": started.isoformat() if started else None,
        "ended_at": now.isoformat() if started else None,
        "duration_ms": int((now - started).total_seconds() * 1000) if started else None,
        "result": result,
        "error": error.model_dump_json() if error else None,
        "values": json.dumps(values) if values else None,
        "next_attempt_at": next_attempt_at.isoformat() if next_attempt_at else None,
        "reclaimed_from": inv.lease.reclaimed_from,
        "reclaimed_claimed_at": inv.lease.reclaimed_claimed_at,
        "reclaimed_lease_until": inv.lease.reclaimed_lease_until,
        "detail": json.dumps(detail) if detail else None,
        "schema_version": SCHEMA_VERSION,
    }


def job_projection(
    inv: Invocation,
    event_type: EventType,
    status: JobStatus,
    now: datetime,
    result: str | None,
    error: ErrorInfo | None,
    parked: dict[str, Any] | None,
    next_attempt_at: datetime | None,
    job_extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any] | None, tuple[str, ...], bool]:
    """``(job item update or None, attributes to remove, whether it requires no cancel pending)``.

    ``job_extra``: attributes the commit must write on the job item even if its status stays (a
    continue's ``run`` and ``run_start_seq``)."""
    if status is inv.snapshot.status and not parked and not job_extra:
        return None, (), False
    update: dict[str, Any] = {
        **status_attributes(inv.job_id, status, now),
        "result": result if event_type is EventType.JOB_COMPLETED else None,
        "error": error.model_dump_json() if event_type is EventType.JOB_FAILED and error else None,
        "last_seq": inv.lease.seq,
        **(job_extra or {}),
    }
    settings = inv.services.settings
    if parked:
        update["waiting_for"] = parked.get("waiting_for")
    job = inv.snapshot.job
    # When the sweeper looks at the job next: a progress deadline, a timer, a retention extension,
    # an old job's retention pass.
    update |= watch.attention(
        inv.job_id,
        status,
        now,
        settings.stall_after,
        settings.sweep_shards,
        parked_due=(parked or {}).get("due"),
        next_tick_at=next_attempt_at,
        cap=Lifetime.of(settings).extension_due(job),
        retention_pass=pass_pending(job),
    )
    if status.is_terminal:
        # The job and its outcome expire together; the rest carry their provisional TTL (an old
        # job's attention entry stays until its retention pass is done, see _store/retention.py).
        update[schema.TTL_ATTRIBUTE] = expires_at(now, settings.retention)
    remove = tuple(a for a in _PARKED_ATTRIBUTES if update.get(a) is None)
    return update, remove, bool(parked)


def refreshed_attention(
    inv: Invocation, now: datetime, next_attempt_at: datetime | None
) -> dict[str, Any] | None:
    """For a commit that leaves the job item alone: a new progress deadline, only if it is stale."""
    settings, job = inv.services.settings, inv.snapshot.job
    cap = Lifetime.of(settings).extension_due(job)
    return watch.refresh_if_stale(job, now, settings.stall_after, settings.sweep_shards, next_attempt_at, cap)
