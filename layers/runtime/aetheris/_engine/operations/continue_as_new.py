"""``ctx.continue_as_new(state)``: end this run's log and go on, as the same job, on a fresh one.

Temporal's ``workflow.continue_as_new`` closes the run and starts a new run of the same workflow id
with the state as its input. Here the job keeps its id (its handle, signals, cancel keep working)
and the one commit is ``ContinuedAsNew`` at the next slot: ``input`` is the state (validated by the
job's input model, size-checked and offloaded to S3 when big, like any recorded value), ``detail``
carries the signals consumed so far (so none is consumed twice), and the job item — in the same
transaction — records ``run`` and ``run_start_seq``. The next tick loads the log from
``run_start_seq`` only and replays the job function from the top with the state as its input: a
tick's work is O(this run), whatever the job's age. Positions keep counting (``history.py``), so
no key of a later run collides with one of an earlier run.

Nothing is done to the earlier runs' items: they expire with their provisional TTL
(``_store/retention.py`` no longer extends them). Compensations registered in a run end with it,
as with a completed job: a later run's failure undoes only its own steps.

Rejected: a run prefix in every key builder (step ids, effect keys, callback waits, child ids,
branch slots) — counting positions on across runs makes them distinct with no builder changed;
and a new job id per run (users' handles, signal senders and parents would have to follow it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NoReturn

from aetheris._engine.come_back import ComeBack
from aetheris._engine.history import OpRecord
from aetheris._engine.operations.base import Operation, OperationHost
from aetheris.errors import ContinueAsNewError, rebuild_error
from aetheris.events import Event, EventType, OpKind

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


class ContinueOp(Operation[Any]):
    kind = OpKind.CONTINUE

    def __init__(self, record: OpRecord, state: Any) -> None:
        super().__init__(record)
        self.state = state

    def replayed(self, outcome: Event, host: OperationHost) -> NoReturn:
        # A worker's history starts after the continue, so only a stored error gets here (the
        # state could not be stored: the job failed at this operation).
        if outcome.error is not None:
            raise rebuild_error(outcome.error)
        raise ContinueAsNewError(host.job_id, "this run already continued as new")

    def execute(self, inv: Invocation) -> NoReturn:
        try:
            # Validated by the job's input model as the next run will read it: a state it rejects
            # fails here, in the run that made it, never in a crash loop of the next run.
            state = inv.definition.input.validate_python(self.state)
            text = inv.recorder.value(state, inv.definition.input, "continue_as_new state")
        except Exception as bad:
            raise ContinueAsNewError(inv.job_id, f"the state cannot be the job's next input: {bad}") from bad
        run = int(inv.snapshot.job.get("run", 1)) + 1
        consumed = sorted(inv.history.consumed_signals())
        event = inv.commit(
            EventType.CONTINUED_AS_NEW,
            self.record,
            # The job's type and version too: an event list that starts here names what it replays.
            detail={
                "run": run,
                "consumed_signals": consumed,
                "job_type": inv.definition.name,
                "version": inv.snapshot.job.get("version"),
            },
            event_extra={"input": text},
            # Where the run's log and positions start (the load; retention lets what is before expire).
            job_extra={"run": run, "run_start_seq": inv.lease.seq, "run_op_base": self.record.index + 1},
        )
        inv.suspend(ComeBack.after_commit(event, inv.clock.now()))
