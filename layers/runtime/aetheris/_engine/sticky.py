"""Sticky warm jobs: a job function kept alive between its ticks on the same worker, so a warm tick
costs the same at step 10,000 as at step 10 (Temporal's sticky execution).

Without it every tick re-runs the job function from the top, answering each earlier operation from
the log: O(steps) CPU per tick, O(steps²) per job. With it, the job function runs on a thread of
its own (a ``Session``); after its one live operation commits, the function is not unwound but
parked inside that operation, and the tick's worker thread gets the tick's ``ComeBack`` as usual.
The job's next tick on this worker hands the parked function the new tick's invocation (the same
history extended by the committed event, no re-parse); the parked operation returns the committed
outcome as a replay would, and the function goes on to run its next operation live.

A parked function is resumed only against the log it produced (``Session.fits``): the snapshot ends
exactly at the event this worker committed (same seq, fence and worker: nobody else wrote to the
log), the slot was claimed fresh (no takeover, no crash loop), no cancel was asked, the job item is
the same job's (same ``created_at``: not a job re-created under the id), its budget unchanged, and
the app still maps the job to the same ``JobDefinition`` object (not re-registered). Anything else
discards it and the tick replays from the top, as before. A function parks only where a replay
would go on the same way: after a commit that settles the operation it asked for, with a next
tick on its way (``may_park``); a stop (cancel, crash loop), a saga's compensations and the job's
end never park, and neither do fan-out branch invocations.

Discarding unwinds the parked function with ``Discarded`` from inside the operation it waits in;
the invocation it belonged to is halted already, so any operation the function still calls (after
a bare ``except:``) raises again and nothing more is committed; its thread then ends. Parked
sessions are bounded per worker (``Settings.sticky_jobs``, least recently used discarded first).

Rejected: pickling or copying the function's state (Python cannot copy a running frame), and
resuming on a log a worker merely *believes* current (a second worker's commit would be invisible
to the parked function: a silent corruption; the snapshot's last item is compared instead).
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aetheris import _log_context
from aetheris._engine.control import ABORTS
from aetheris._engine.history import OpRecord
from aetheris.events import Event, EventType, OpKind

if TYPE_CHECKING:
    from aetheris._engine.come_back import ComeBack
    from aetheris._engine.invocation import Invocation
    from aetheris._engine.job_context import JobContext
    from aetheris._engine.operations.base import Operation
    from aetheris._store.jobs import JobSnapshot
    from aetheris._store.log import SlotLease
    from aetheris.app import JobDefinition
    from aetheris.errors import Suspend, WorkerCrashLoop

log = _log_context.logger("aetheris.worker")
# How long a discard waits for the parked function to unwind (it only runs its own except/finally).
DISCARD_WAIT_S = 2.0
_ENDS = (EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED)


class Discarded(BaseException):
    """Unwinds a parked job function that will not be resumed; it commits nothing more."""


@dataclass(frozen=True)
class _Result:
    """What the session thread hands back for one tick: its ``ComeBack``, or what it raised."""

    come_back: ComeBack | None = None
    error: BaseException | None = None


@dataclass(frozen=True)
class _Resume:
    invocation: Invocation
    log_keys: object  # the new tick's log keys (``_log_context.holder()``)


class Session:
    """One job function on its own thread, serving its job's ticks on this worker one at a time."""

    def __init__(self, pool: StickyJobs, invocation: Invocation) -> None:
        self.pool = pool
        self.job_id = invocation.job_id
        self.definition = invocation.definition
        self.created_at = invocation.snapshot.job.get("created_at")
        self.budget = invocation.snapshot.job.get("budget")
        self.current = invocation  # the invocation the function is bound to now
        self.ctx: JobContext | None = None  # set when the function starts (its host is swapped on resume)
        self.parked_on: Event | None = None  # the event this worker committed last, while parked
        self.discarded = False
        self._to_function: queue.SimpleQueue[_Resume | None] = queue.SimpleQueue()
        self._to_worker: queue.SimpleQueue[_Result] = queue.SimpleQueue()
        self.thread: threading.Thread | None = None

    # -- the worker's side --------------------------------------------------------------------

    def start(self) -> _Result:
        keys = _log_context.holder()
        # Named after the worker's thread that starts it: a thread dump (and a test that tells the
        # functions apart by thread) sees whose job function it is.
        name = f"{threading.current_thread().name}/job-{self.job_id}"
        self.thread = threading.Thread(target=self._main, args=(keys,), name=name, daemon=True)
        self.thread.start()
        return self._to_worker.get()

    def resume(self, invocation: Invocation) -> _Result:
        self.parked_on = None
        self._to_function.put(_Resume(invocation, _log_context.holder()))
        return self._to_worker.get()

    def discard(self) -> None:
        """Unwind the parked function and wait (briefly) for its thread to end.

        It has nothing left to commit; the wait is so that what it logs (an ``except:`` that caught
        the unwinding) comes out now, and no thread outlives the discard."""
        if self.discarded:
            return
        self.discarded = True
        self._to_function.put(None)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(DISCARD_WAIT_S)
            if thread.is_alive():
                log.warning("job %s: a discarded job function is still running; left behind", self.job_id)

    def fits(
        self,
        snapshot: JobSnapshot,
        definition: JobDefinition,
        lease: SlotLease,
        crash_loop: WorkerCrashLoop | None,
    ) -> bool:
        """May this tick resume the parked function? Only on the very log it left behind."""
        parked, history = self.parked_on, self.current.history
        if parked is None or self.discarded or definition is not self.definition or crash_loop is not None:
            return False
        if lease.reclaimed_from is not None or lease.abandoned_claims or lease.seq != parked.seq + 1:
            return False
        job = snapshot.job
        if job.get("created_at") != self.created_at or job.get("cancel_requested_at"):
            return False
        if job.get("budget") != self.budget or len(snapshot.events) != len(history.events):
            return False
        last = snapshot.events[-1] if snapshot.events else {}
        return (
            int(last.get("seq", -1)) == parked.seq
            and int(last.get("fence", -1)) == parked.fence
            and last.get("worker_id") == parked.worker_id == lease.worker_id
            and history.last is parked
        )

    # -- the function's side ------------------------------------------------------------------

    def _main(self, log_keys: object) -> None:
        _log_context.adopt(log_keys)
        try:
            result = _Result(come_back=self.current.run(self))
        except Discarded:
            result = _Result()
        except BaseException as error:  # noqa: BLE001 - handed to the worker thread, raised there
            result = _Result(error=error)
        finally:
            self.pool.ended(self)
        if not self.discarded:
            self._to_worker.put(result)
        elif self.current.swallowed:  # it caught its unwinding and went on: name the except to fix
            log.error(self.current.swallowed)

    def may_park(self, inv: Invocation, op: Operation[Any], suspended: Suspend) -> bool:
        """Would a replay of the next tick go on exactly where the function is now?"""
        from aetheris._engine.come_back import ComeBack

        come_back = suspended.come_back
        if self.discarded or inv is not self.current or inv.halted is not suspended:
            return False
        if not isinstance(come_back, ComeBack) or come_back.release or come_back.also:
            return False
        committed = come_back.committed
        if committed is None or committed is not inv.committed or come_back.after is None:
            return False
        if inv.replay.diverged is not None or inv.swallowed is not None:
            return False
        if inv.crash_loop is not None or inv.cancel_requested_at or not self.pool.capacity:
            return False
        if not self.pool.holds(inv.job_id):  # its log is over the cache's byte bound: replay instead
            return False
        if op.kind in (OpKind.END, OpKind.COMPENSATE) or committed.op != op.record.index:
            return False
        if committed.type in ABORTS or committed.type in _ENDS:
            return False
        if committed.type is EventType.CONTINUED_AS_NEW:
            return False  # the next run starts from the top with the state as its input
        # The committed event must settle the operation: then the next tick's replay would return
        # its outcome here and go on to the next operation, which is what resuming does.
        probe = OpRecord(op.record.index, op.record.kind, op.record.name, [*op.record.events, committed])
        return probe.outcome is committed

    def park(self, inv: Invocation, come_back: ComeBack) -> Invocation:
        """Hand the tick's result to the worker and wait for the job's next tick (or a discard)."""
        assert inv.committed is not None
        inv.history.add(inv.committed)
        self.parked_on = inv.committed
        self.pool.parked(self)
        self._to_worker.put(_Result(come_back=come_back))
        resume = self._to_function.get()
        if resume is None:
            raise Discarded
        _log_context.adopt(resume.log_keys)
        self.current = resume.invocation
        if self.ctx is not None:
            self.ctx._host = resume.invocation
        return resume.invocation


class StickyJobs:
    """A worker's parked job functions, by job id; at most ``capacity``, least recently used out.

    A parked function holds its job's parsed log. ``holds(job_id)`` says whether the worker's event
    cache — bounded in bytes (``Settings.event_cache_bytes``) — still keeps that log: a job it does
    not keep is never parked, and one it has dropped since is discarded at the next park, so the
    logs parked functions hold stay within the cache's bound, not merely ``capacity`` jobs."""

    def __init__(self, capacity: int, holds: Callable[[str], bool] | None = None) -> None:
        self.capacity = capacity
        self._holds = holds or (lambda job_id: True)
        self._parked: OrderedDict[str, Session] = OrderedDict()
        self._running: set[Session] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._parked)

    def holds(self, job_id: str) -> bool:
        """May the job's function be parked: does the byte-bounded event cache keep its log?"""
        return self._holds(job_id)

    def threads(self) -> int:
        """Threads alive for this worker's sessions (parked, or running a tick)."""
        with self._lock:
            sessions = [*self._parked.values(), *self._running]
        return sum(1 for s in sessions if s.thread is not None and s.thread.is_alive())

    def claim(
        self,
        snapshot: JobSnapshot,
        definition: JobDefinition,
        lease: SlotLease,
        crash_loop: WorkerCrashLoop | None,
    ) -> Session | None:
        """The parked session this tick may resume; one that may not is discarded."""
        with self._lock:
            session = self._parked.pop(lease.job_id, None)
        if session is None:
            return None
        if session.fits(snapshot, definition, lease, crash_loop):
            return session
        session.discard()
        return None

    def forget(self, job_id: str) -> None:
        """The job needs no more ticks here (it ended, or its log moved on elsewhere)."""
        with self._lock:
            session = self._parked.pop(job_id, None)
        if session is not None:
            session.discard()

    def run(self, invocation: Invocation, session: Session | None) -> ComeBack:
        """Run the tick: resume ``session`` with ``invocation``, or start the function afresh."""
        if self.capacity <= 0:
            return invocation.run()
        if session is None:
            self.forget(invocation.job_id)  # a stale parked function must never outlive this tick
            session = Session(self, invocation)
            with self._lock:
                self._running.add(session)
            result = session.start()
        else:
            with self._lock:
                self._running.add(session)
            result = session.resume(invocation)
        if result.error is not None:
            raise result.error
        assert result.come_back is not None
        return result.come_back

    def close(self) -> None:
        """Discard every parked function (the worker is going away)."""
        with self._lock:
            parked = list(self._parked.values())
            self._parked.clear()
        for session in parked:
            session.discard()

    # -- called from the session thread -------------------------------------------------------

    def parked(self, session: Session) -> None:
        evicted: list[Session] = []
        with self._lock:
            self._running.discard(session)
            previous = self._parked.pop(session.job_id, None)
            if previous is not None and previous is not session:
                evicted.append(previous)
            self._parked[session.job_id] = session
            while len(self._parked) > self.capacity:
                evicted.append(self._parked.popitem(last=False)[1])
            for job_id in [job_id for job_id in self._parked if not self._holds(job_id)]:
                evicted.append(self._parked.pop(job_id))
        for old in evicted:
            old.discard()

    def ended(self, session: Session) -> None:
        with self._lock:
            self._running.discard(session)
            if self._parked.get(session.job_id) is session:
                del self._parked[session.job_id]
