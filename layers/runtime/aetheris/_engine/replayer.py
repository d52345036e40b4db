"""Replay a recorded log against today's code, with no effect: no store, no queue, no tool, no clock.

The job function runs against the log exactly as a worker would replay it; every recorded outcome
is injected. Reaching an operation the log has no outcome for ends the replay (the log stops
there); asking for something other than what was recorded is a divergence. If the job ran to its
end, its output is compared with the recorded result.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from aetheris import _serde
from aetheris._engine import guard
from aetheris._engine.history import History, OpRecord
from aetheris._engine.job_context import JobContext
from aetheris._engine.replay import Replay
from aetheris._engine.saga import Compensation
from aetheris._engine.steps import replayed_outcome
from aetheris._store.payloads import Payloads
from aetheris.app import JobDefinition
from aetheris.errors import NondeterminismError, Suspend
from aetheris.events import Event, EventType, OpKind
from aetheris.policy import RetryPolicy


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


class _NoClock:
    def now(self) -> datetime:
        raise _EndOfLog

    def sleep(self, duration: timedelta) -> None:
        raise _EndOfLog


class _NoIds:
    def uuid(self) -> str:
        raise _EndOfLog

    def random(self) -> float:
        raise _EndOfLog


class _ReplayOnly:
    """Stands in for an invocation: serves recorded outcomes, never runs anything live."""

    def __init__(self, job_id: str, history: History) -> None:
        self.job_id = job_id
        self.replay = Replay(job_id, history)
        self.clock = _NoClock()
        self.ids = _NoIds()
        self.attempt = 1
        self.compensations: list[Compensation] = []
        self.payloads = Payloads.inline_only()  # an exported history holds real values, not references

    def run_step(
        self,
        op: OpRecord,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        retry: RetryPolicy | None,
        timeout: timedelta | None,
    ) -> Any:
        settled, result = replayed_outcome(op, fn, self.payloads)
        if not settled:
            raise _EndOfLog
        return result

    def check_stop(self) -> None:
        return None


def _replay_compensations(dry: _ReplayOnly) -> bool:
    """After an unhandled error, the log holds the saga: each compensation in reverse order, then
    the end. ``True`` if the log covers them all (the run reached its end)."""
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
    dry = _ReplayOnly(job_id, history)
    report = ReplayReport(job_id=job_id, operations=0)
    ctx = JobContext(dry)  # type: ignore[arg-type]
    output: Any = None
    try:
        job_input = definition.input.validate_json(input_json)
        with guard.orchestrating(job_id):
            output = definition.fn(ctx, job_input)
        report.reached_end = True
    except Suspend:
        pass
    except NondeterminismError as diverged:
        report.divergence = diverged
    except Exception:  # noqa: BLE001 - the job's own error ends the recorded run like a return
        report.reached_end = _replay_compensations(dry) if dry.compensations else True
    report.divergence = report.divergence or dry.replay.diverged
    report.operations = min(dry.replay.position, len(history.ops))
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
