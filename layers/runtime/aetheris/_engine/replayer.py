"""Replay a recorded log against today's code, with no effect: no store, no queue, no tool, no clock.

The job function runs against the log with the same operations a worker uses (``operations/``),
hosted by ``_ReplayOnly``: every recorded outcome is returned as a worker would return it, and the
first operation the log has no outcome for ends the replay (the log stops there); asking for
something other than what was recorded is a divergence. If the job ran to its end, its output is
compared with the recorded result; a stopped or failed job's saga is replayed too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from aetheris import _serde
from aetheris._engine import guard
from aetheris._engine.control import ABORTS, Abort
from aetheris._engine.history import History
from aetheris._engine.job_context import JobContext
from aetheris._engine.operations.base import Operation
from aetheris._engine.replay import Replay
from aetheris._engine.saga import Compensation
from aetheris._store.payloads import Payloads
from aetheris.app import JobDefinition
from aetheris.errors import NondeterminismError, Suspend
from aetheris.events import Event, EventType, OpKind


class _EndOfLog(Suspend):
    """The code asked for something the log holds no outcome for: the recorded run stops here."""


@dataclass
class ReplayReport:
    job_id: str
    operations: int  # operations replayed from the log
    divergence: NondeterminismError | None = None
    reached_end: bool = False  # the job function returned or raised (the log covered the whole run)
    output_matches: bool | None = None  # when the log recorded a result: does the replayed output equal it?

    @property
    def consistent(self) -> bool:
        return self.divergence is None and self.output_matches is not False


class _ReplayOnly:
    """The operation host of a dry replay: serves recorded outcomes, never runs anything live."""

    def __init__(self, job_id: str, history: History) -> None:
        self.job_id = job_id
        self.replay = Replay(job_id, history)
        self.attempt = 1
        self.compensations: list[Compensation] = []
        self.halted: BaseException | None = None
        self._payloads = Payloads.inline_only()  # an exported history holds real values, not references

    @property
    def payloads(self) -> Payloads:
        return self._payloads

    def enter(self) -> _ReplayOnly:
        if self.halted is not None:
            raise self.halted
        if self.replay.diverged is not None:
            raise self.replay.diverged
        return self

    def halt(self, control: BaseException) -> None:
        if self.halted is None:
            self.halted = control

    def live(self, op: Operation[Any]) -> NoReturn:
        raise _EndOfLog

    def live_clock(self) -> NoReturn:
        raise _EndOfLog

    def live_ids(self) -> NoReturn:
        raise _EndOfLog


def _replay_saga(dry: _ReplayOnly) -> bool:
    """After an unhandled error or a stop, the log holds the saga: each compensation in reverse
    order, then the end. ``True`` if the log covers them all (the run reached its end)."""
    for entry in reversed(dry.compensations):
        try:
            op = dry.replay.begin(OpKind.COMPENSATE, f"undo-{entry.step.name}")
        except NondeterminismError:
            return True  # named by the report; the end check below is skipped
        if op.outcome is None:
            return False  # the recorded run stops mid-saga
        if op.outcome.type is not EventType.COMPENSATION_COMMITTED:
            return True  # a compensation failed for good: the job ended right after it
    return True


def replay_events(definition: JobDefinition, input_json: str, events: list[Event]) -> ReplayReport:
    job_id = events[0].job_id if events else "unknown"
    history = History(events)
    start = history.run_start  # a continued job: its current run, from the state it started with
    if start is not None and start.input is not None:
        input_json = start.input
    dry = _ReplayOnly(job_id, history)
    report = ReplayReport(job_id=job_id, operations=0)
    ctx = JobContext(dry)
    output: Any = None
    stopped = False
    try:
        job_input = definition.input.validate_json(input_json)
        with guard.orchestrating(job_id):
            output = definition.fn(ctx, job_input)
        report.reached_end = dry.halted is None
    except Abort:
        stopped = True
    except Suspend:
        pass
    except NondeterminismError as diverged:
        report.divergence = diverged
    except Exception:  # noqa: BLE001 - the job's own error ends the recorded run like a return
        if dry.halted is None:
            stopped = True
    end = history.ops.get(dry.replay.position)
    at_end = report.reached_end and end is not None and end.kind is OpKind.END
    if at_end and end is not None and end.outcome is not None and end.outcome.type in ABORTS:
        dry.replay.begin(OpKind.END, "end")  # a cancel took effect at the job's end: its saga follows
        stopped = True
    if stopped or isinstance(dry.halted, Abort):
        report.reached_end = _replay_saga(dry)
    report.divergence = report.divergence or dry.replay.diverged
    report.operations = min(dry.replay.position - history.base, len(history.ops))
    end = history.ops.get(dry.replay.position)
    if report.reached_end and report.divergence is None:
        if end is not None and end.kind is not OpKind.END:
            report.divergence = NondeterminismError(
                job_id, end.index, f"{end.kind.value} {end.name!r}", "the job to end"
            )
        elif end is not None:
            report.operations += 1
            if end.events[-1].type is EventType.JOB_COMPLETED:
                replayed = json.loads(_serde.dump(output, definition.output, "job result", 1 << 30))
                report.output_matches = replayed == end.events[-1].result_json()
    return report
