"""The worker's side of a fan-out branch: one branch tick runs one attempt of one branch.

    load the job (its log) and the fan-out's branch slots → is this tick current? → claim the
        branch's slot n → replay the job function to the fan-out, run the branch → commit into the
        slot → a retry: the branch's next tick; settled: start the next branch, or join

Stale and duplicate branch ticks are recognised as the job's are (``worker.py``): by the slot they
name. When a branch settles, its worker reads the branches again (after its own commit, so of two
branches settling at once at least one sees both) and either starts the next branch not started
yet (``max_concurrency``: each branch that ends starts at most one, so no more than that many
ever run) or — every started branch settled and the rule decided — asks for the join: the join
marker lets one tick out per view of the settled branches, so the job's next tick is sent once.
A worker that dies after its commit leaves its message to be redelivered; the redelivery finds
the slot committed and does the rest again, finding what it already started or asked for.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from aetheris import _log_context
from aetheris._clock import to_millis
from aetheris._engine.branch_invocation import BranchInvocation
from aetheris._engine.come_back import ComeBack
from aetheris._engine.fanout_rule import FanOutSpec, decide, started_settled
from aetheris._engine.history import History
from aetheris._store import schema
from aetheris._store.branches import BranchStore
from aetheris._store.jobs import CLAIMED
from aetheris._store.log import SlotTaken
from aetheris._store.queue import Tick
from aetheris.errors import UnknownJobType
from aetheris.events import Event, EventType, OpKind

if TYPE_CHECKING:
    from aetheris._engine.worker import TickOutcome, Worker

log = logging.getLogger("aetheris.worker")


def handle_branch(worker: Worker, tick: Tick, receive_count: int, time_left: timedelta | None) -> TickOutcome:
    from aetheris._engine.worker import TickOutcome

    services = worker.services
    assert tick.branch is not None
    op, index = (int(part) for part in tick.branch.split("."))
    snapshot = services.jobs.load(tick.job_id)
    if snapshot is None:
        return TickOutcome.UNKNOWN_JOB
    if snapshot.status.is_terminal:
        return TickOutcome.STALE
    record = History(worker.parsed.events(tick.job_id, snapshot.events)).ops.get(op)
    started = record.first(EventType.FAN_OUT_STARTED) if record is not None else None
    if record is None or record.kind is not OpKind.FANOUT or started is None:
        return TickOutcome.STALE
    spec = FanOutSpec.from_detail(started.detail)
    store = BranchStore(services.jobs.table)
    branches = store.load(tick.job_id, op)
    lane = branches.lane(index)
    slot = lane.next_seq
    if index >= spec.count or record.outcome is not None:
        return TickOutcome.STALE
    if tick.seq != slot:
        if tick.seq < slot and receive_count > 1 and lane.claim is None:
            _after_commit(
                worker, tick.job_id, op, index, spec, started, lane.last
            )  # our successor may be lost
        return TickOutcome.STALE
    try:
        definition = worker.app.get(snapshot.job["job_type"], snapshot.job.get("version"))
    except UnknownJobType as unknown:
        log.error("cannot advance job %s: %s", tick.job_id, unknown)
        return TickOutcome.DEFERRED
    now = services.clock.now()
    claim = lane.claim
    if (
        claim is not None
        and claim.get("state") == CLAIMED
        and int(claim.get("lease_until", 0)) >= to_millis(now)
    ):
        return worker._held(claim, receive_count)
    try:
        lease = services.log.claim(
            tick.job_id,
            slot,
            worker.worker_id,
            to_millis(now),
            to_millis(now + services.settings.lease),
            sk=schema.branch_sk(op, index, slot),
        )
    except SlotTaken as taken:
        return worker._held(taken.current, receive_count)
    budget, crash_loop = worker._limits(lease, time_left)
    invocation = BranchInvocation(
        services,
        definition,
        snapshot,
        lease,
        budget,
        worker.app.strict_effects,
        crash_loop=crash_loop,
        op=op,
        branch=index,
        spec=spec,
        branches=branches,
    )
    invocation.app = worker.app
    _log_context.add(
        job_type=snapshot.job.get("job_type"),
        branch=tick.branch,
        fence=lease.fence,
        attempt=len(lane.events) + 1,
    )
    try:
        come_back = invocation.run()
    except BaseException as error:  # noqa: BLE001 - the worker's one table decides
        return worker._failed_tick(error, lease)
    if invocation.swallowed:
        log.error(invocation.swallowed)
    return _settle(worker, tick, come_back, invocation, spec, started)


def _settle(
    worker: Worker, tick: Tick, come_back: ComeBack, inv: BranchInvocation, spec: FanOutSpec, started: Event
) -> TickOutcome:
    from aetheris._engine.worker import TickOutcome

    services = worker.services
    if come_back.release:
        services.log.release(inv.lease)
        if come_back.after is not None:
            services.queue.send(tick, come_back.after)
            return TickOutcome.RESCHEDULED
        return TickOutcome.IDLE
    committed = come_back.committed
    assert committed is not None and inv.branch_target is not None
    op, index = inv.branch_target
    _after_commit(worker, tick.job_id, op, index, spec, started, committed)
    return TickOutcome.ADVANCED


def _after_commit(
    worker: Worker, job_id: str, op: int, index: int, spec: FanOutSpec, started: Event, last: Event | None
) -> None:
    """What follows a branch's commit: its retry, or — settled — the next branch or the join."""
    services = worker.services
    if last is None:
        return
    if last.type is EventType.STEP_FAILED and last.next_attempt_at is not None:
        services.faults.reach("before_enqueue")
        delay = max(timedelta(0), last.next_attempt_at - services.clock.now())
        services.queue.send(Tick(job_id=job_id, seq=last.seq + 1, branch=f"{op}.{index}"), delay)
        return
    store = BranchStore(services.jobs.table)
    branches = store.load(job_id, op)
    job = services.jobs.get(job_id)
    cancelled = bool(job and job.get("cancel_requested_at"))
    if decide(spec, branches, cancelled) is None:
        _start_next(worker, store, job_id, op, index, spec, branches)
        return
    done, settled = started_settled(spec, branches)
    ttl = services.log.lifetime.provisional(services.clock.now())
    if done and store.mark_join(job_id, op, settled, index, ttl):
        services.faults.reach("before_enqueue")
        services.queue.send(Tick(job_id=job_id, seq=started.seq + 1))


def _start_next(
    worker: Worker, store: BranchStore, job_id: str, op: int, index: int, spec: FanOutSpec, branches: object
) -> None:
    from aetheris._store.branches import Branches

    assert isinstance(branches, Branches)
    services = worker.services
    mine = [lane for lane in branches.lanes.values() if lane.queued_by == index]
    if mine:  # redelivered: the branch we started already, its tick perhaps lost with us
        services.queue.send(Tick(job_id=job_id, seq=mine[0].next_seq, branch=f"{op}.{mine[0].index}"))
        return
    for candidate in range(spec.initial, spec.count):
        if branches.started(candidate, spec.initial):
            continue
        ttl = services.log.lifetime.provisional(services.clock.now())
        if store.reserve(job_id, op, candidate, index, ttl):
            services.faults.reach("before_enqueue")
            services.queue.send(Tick(job_id=job_id, seq=0, branch=f"{op}.{candidate}"))
            return
