"""What Aetheris tells operators: every metric name (defined here, once), how handlers publish them,
the log keys of a tick, and the replay-safe logger job code writes through.

Metrics are CloudWatch EMF lines printed by Powertools in the handlers, namespace ``Aetheris``,
dimension ``service`` (the function: ``api``, ``worker``, ``signals``, ``sweeper``), plus
``job_type`` or ``operation`` where a metric is broken down — both bounded (job types are the ones
an ``App`` registers, cut to ``MAX_DIMENSION_VALUES`` distinct values per process; operation kinds
are an enum). ``StuckJobs`` has no dimension at all: one number for the whole deployment, which the
``StuckJobsAlarm`` watches.

The engine reports facts (an operation took 120 ms, an effect was replayed) into a ``Telemetry``
buffer, with no Powertools in sight; the handler publishes what the buffer holds after each record
(``publish``). So the engine stays testable without EMF, and the names stay in this one module.

``ReplaySafeLogger`` is ``ctx.logger``: while the job function replays recorded operations its lines
are dropped (they were written when those operations ran live), as the Lambda durable functions
SDK's context logger does; live lines carry the tick's keys (``_log_context``: job_id, job_type,
seq, attempt, fence, worker_id) and its own (``sctx.logger``: the step's name).
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final, Protocol

from aetheris import _log_context

NAMESPACE: Final = "Aetheris"
MAX_DIMENSION_VALUES: Final = 50  # distinct job types per process; more are reported as "other"
OTHER: Final = "other"


class Metric(enum.StrEnum):
    """Every metric name Aetheris emits (besides ``Tick_<outcome>`` and ``Signal_<outcome>``)."""

    # api
    JOBS_STARTED = "JobsStarted"  # total, dimension service
    JOBS_STARTED_BY_TYPE = "JobsStartedByType"  # + job_type
    # worker, from each tick's outcome
    LEASE_CONFLICTS = "LeaseConflicts"  # the tick found the slot held by a live claim (busy, deferred)
    STALE_FENCE_REJECTIONS = "StaleFenceRejections"  # a commit or record refused: our fence was stale
    # engine (Telemetry), published by the worker handler
    OPERATION_DURATION = "OperationDuration"  # ms, + operation (step, wait, sleep, compensate, end)
    EFFECTS_EXECUTED = "EffectsExecuted"  # a tool was called
    EFFECTS_REPLAYED = "EffectsReplayed"  # a recorded operation returned its outcome without running
    EFFECTS_DEDUPLICATED = "EffectsDeduplicated"  # a claim found the effect recorded: not called again
    SIGNALS_CONSUMED = "SignalsConsumed"
    SIGNAL_TO_RESUME_LATENCY = "SignalToResumeLatency"  # ms from inbox arrival to the consuming commit
    JOBS_COMPLETED = "JobsCompleted"  # + job_type
    JOBS_FAILED = "JobsFailed"  # + job_type
    JOBS_CANCELLED = "JobsCancelled"  # + job_type
    JOBS_COMPENSATED = "JobsCompensated"  # + job_type: ended after running compensations
    # signals
    SIGNALS_ACCEPTED = "SignalsAccepted"  # landed in the inbox (first delivery of a signal id)
    # sweeper
    SWEPT_JOBS_TICKED = "SweptJobsTicked"  # jobs it sent a tick (lost ticks and due timers)
    STALLED_JOBS_TICKED = "StalledJobsTicked"  # of those, runnable jobs whose tick was lost
    RETENTION_REPAIRED = "RetentionRepaired"  # finished jobs whose retention pass it redid
    RETENTION_EXTENDED = "RetentionExtended"  # live jobs whose items' TTLs it extended
    STUCK_JOBS = "StuckJobs"  # gauge, no dimensions (the stuck-jobs alarm watches it)
    OLDEST_PENDING_AGE = "OldestPendingAge"  # seconds, gauge, no dimensions


class Unit(enum.StrEnum):
    """The CloudWatch units used (Powertools ``MetricUnit`` values)."""

    COUNT = "Count"
    SECONDS = "Seconds"
    MILLISECONDS = "Milliseconds"


UNITS: Final[Mapping[Metric, Unit]] = {
    Metric.OLDEST_PENDING_AGE: Unit.SECONDS,
    Metric.OPERATION_DURATION: Unit.MILLISECONDS,
    Metric.SIGNAL_TO_RESUME_LATENCY: Unit.MILLISECONDS,
}
# Which function emits each metric (its ``service`` dimension); None: no dimension at all.
_NOT_WORKER: Final[dict[Metric, str | None]] = {
    Metric.JOBS_STARTED: "api",
    Metric.JOBS_STARTED_BY_TYPE: "api",
    Metric.SIGNALS_ACCEPTED: "signals",
    Metric.SWEPT_JOBS_TICKED: "sweeper",
    Metric.STALLED_JOBS_TICKED: "sweeper",
    Metric.RETENTION_REPAIRED: "sweeper",
    Metric.RETENTION_EXTENDED: "sweeper",
    Metric.STUCK_JOBS: None,
    Metric.OLDEST_PENDING_AGE: None,
}
SERVICES: Final[Mapping[Metric, str | None]] = {m: _NOT_WORKER.get(m, "worker") for m in Metric}
# The extra dimension of a broken-down metric.
BROKEN_DOWN: Final[Mapping[Metric, str]] = {
    Metric.JOBS_STARTED_BY_TYPE: "job_type",
    Metric.JOBS_COMPLETED: "job_type",
    Metric.JOBS_FAILED: "job_type",
    Metric.JOBS_CANCELLED: "job_type",
    Metric.JOBS_COMPENSATED: "job_type",
    Metric.OPERATION_DURATION: "operation",
}
# Emitted by the engine through Telemetry once it is wired (see the module docstring).
FROM_ENGINE: Final = frozenset(
    {
        Metric.OPERATION_DURATION,
        Metric.EFFECTS_EXECUTED,
        Metric.EFFECTS_REPLAYED,
        Metric.EFFECTS_DEDUPLICATED,
        Metric.SIGNALS_CONSUMED,
        Metric.SIGNAL_TO_RESUME_LATENCY,
        Metric.JOBS_COMPLETED,
        Metric.JOBS_FAILED,
        Metric.JOBS_CANCELLED,
        Metric.JOBS_COMPENSATED,
    }
)
# Gauges the sweeper publishes (GET /observability/summary's numbers), no dimensions.
FROM_SWEEPER: Final = frozenset({Metric.STUCK_JOBS, Metric.OLDEST_PENDING_AGE})
# Tick outcomes (aetheris._engine.worker.TickOutcome values) that count as a lease conflict or as
# a stale-fence rejection.
LEASE_CONFLICT_OUTCOMES: Final = frozenset({"busy", "deferred"})
STALE_FENCE_OUTCOMES: Final = frozenset({"lease_lost"})
# Keys every log line of a tick carries where known (which line has which: _log_context).
LOG_KEYS: Final = _log_context.TICK_KEYS


def tick_metric(outcome: str) -> str:
    """The per-outcome counter of the worker (``Tick_advanced``, ``Tick_deferred``, ...)."""
    return f"Tick_{outcome}"


def signal_metric(outcome: str) -> str:
    """The per-outcome counter of the signal ingest (``Signal_woke``, ``Signal_duplicate``, ...)."""
    return f"Signal_{outcome}"


@dataclass(frozen=True)
class Sample:
    """One metric value to publish, with its breakdown dimension if it has one."""

    metric: Metric
    value: float
    dimension: str | None = None  # the value of BROKEN_DOWN[metric]


class Telemetry:
    """Facts the engine reports while it runs; the handler drains and publishes them.

    Thread-safe (a step's heartbeat and body run on their own threads). Job types beyond
    ``MAX_DIMENSION_VALUES`` distinct ones are reported as ``other``: a dimension must stay bounded.
    """

    def __init__(self) -> None:
        self._samples: list[Sample] = []
        self._job_types: set[str] = set()
        self._lock = threading.Lock()

    def operation(self, kind: str, duration: timedelta) -> None:
        self._add(Metric.OPERATION_DURATION, duration.total_seconds() * 1000, kind)

    def effect_executed(self) -> None:
        self._add(Metric.EFFECTS_EXECUTED, 1)

    def effect_replayed(self, count: int = 1) -> None:
        if count:
            self._add(Metric.EFFECTS_REPLAYED, count)

    def effect_deduplicated(self) -> None:
        self._add(Metric.EFFECTS_DEDUPLICATED, 1)

    def signal_consumed(self, latency: timedelta | None) -> None:
        self._add(Metric.SIGNALS_CONSUMED, 1)
        if latency is not None:
            self._add(Metric.SIGNAL_TO_RESUME_LATENCY, max(latency.total_seconds() * 1000, 0.0))

    def job_ended(self, job_type: str, status: str, compensated: bool = False) -> None:
        """``status``: the terminal ``JobStatus`` value (COMPLETED, FAILED, CANCELLED)."""
        metric = {"COMPLETED": Metric.JOBS_COMPLETED, "FAILED": Metric.JOBS_FAILED}.get(
            status, Metric.JOBS_CANCELLED
        )
        self._add(metric, 1, self._job_type(job_type))
        if compensated:
            self._add(Metric.JOBS_COMPENSATED, 1, self._job_type(job_type))

    def drain(self) -> list[Sample]:
        with self._lock:
            samples, self._samples = self._samples, []
        return samples

    def _job_type(self, job_type: str) -> str:
        name = job_type[:100]
        with self._lock:
            if name in self._job_types or len(self._job_types) < MAX_DIMENSION_VALUES:
                self._job_types.add(name)
                return name
        return OTHER

    def _add(self, metric: Metric, value: float, dimension: str | None = None) -> None:
        with self._lock:
            if len(self._samples) >= MAX_SAMPLES:  # nobody drains (a runtime driven without handlers)
                del self._samples[: MAX_SAMPLES // 2]
            self._samples.append(Sample(metric, value, dimension))


# Bounds the buffer of a runtime whose samples nobody publishes: memory, not a metric, is at stake.
MAX_SAMPLES = 10_000


class MetricSink(Protocol):
    """What ``publish`` needs of a Powertools ``Metrics`` (``add_metric``)."""

    def add_metric(self, name: str, unit: Any, value: float, resolution: Any = ...) -> None: ...


SingleMetric = Callable[[Sample, str], None]


def publish(metrics: MetricSink, samples: Iterable[Sample], service: str) -> None:
    """Add plain samples to ``metrics`` (flushed with the invocation); a broken-down one goes out
    as its own EMF line with its extra dimension (Powertools' ``single_metric``)."""
    for sample in samples:
        unit = UNITS.get(sample.metric, Unit.COUNT).value
        if sample.dimension is None:
            metrics.add_metric(name=sample.metric.value, unit=unit, value=sample.value)
            continue
        from aws_lambda_powertools.metrics import single_metric
        from aws_lambda_powertools.metrics.functions import is_metrics_disabled

        if is_metrics_disabled():  # single_metric prints regardless (the local stack turns EMF off)
            continue
        with single_metric(
            name=sample.metric.value,
            unit=unit,  # type: ignore[arg-type]
            value=sample.value,
            namespace=NAMESPACE,
            default_dimensions={"service": service},
        ) as metric:
            metric.add_dimension(name=BROKEN_DOWN[sample.metric], value=sample.dimension)


def tick_samples(outcome: str) -> list[Sample]:
    """What the worker handler can tell from a tick's outcome alone."""
    if outcome in LEASE_CONFLICT_OUTCOMES:
        return [Sample(Metric.LEASE_CONFLICTS, 1)]
    if outcome in STALE_FENCE_OUTCOMES:
        return [Sample(Metric.STALE_FENCE_REJECTIONS, 1)]
    return []


# -- logs ----------------------------------------------------------------------------------------


class LogTarget(Protocol):
    """A ``logging.Logger`` or a Powertools ``Logger``: level methods taking ``extra``."""

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None: ...
    def info(self, msg: object, *args: object, **kwargs: Any) -> None: ...
    def warning(self, msg: object, *args: object, **kwargs: Any) -> None: ...
    def error(self, msg: object, *args: object, **kwargs: Any) -> None: ...
    def exception(self, msg: object, *args: object, **kwargs: Any) -> None: ...
    def critical(self, msg: object, *args: object, **kwargs: Any) -> None: ...


class ReplaySafeLogger:
    """A logger for job and step code: silent while ``is_replaying()``, keys added to live lines:
    the open tick's (``_log_context.current()``), then its own, then the call's ``extra``.

    ``ReplaySafeLogger(logging.getLogger("aetheris.job"), lambda: ctx.is_replaying, job_id=...)``.
    ``suppressed`` counts the lines dropped on replay (what a test can check). ``bind(**keys)``
    returns a logger with more keys (a step's name and attempt), replaying as this one does.
    """

    def __init__(
        self, target: LogTarget | logging.Logger, is_replaying: Callable[[], bool], **keys: object
    ) -> None:
        self._target = target
        self._is_replaying = is_replaying
        self.keys: dict[str, object] = {k: v for k, v in keys.items() if v is not None}
        self.suppressed = 0
        # Frames between the caller and logging's own call: ours (2), and Powertools' wrapper (1).
        self._stacklevel = 3 if isinstance(target, logging.Logger) else 4

    def bind(self, **keys: object) -> ReplaySafeLogger:
        bound = ReplaySafeLogger(self._target, self._is_replaying, **self.keys, **keys)
        return bound

    def debug(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log("debug", msg, args, kwargs)

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log("info", msg, args, kwargs)

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log("warning", msg, args, kwargs)

    def error(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log("error", msg, args, kwargs)

    def exception(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log("exception", msg, args, kwargs)

    def critical(self, msg: object, *args: object, **kwargs: Any) -> None:
        self._log("critical", msg, args, kwargs)

    def _log(self, level: str, msg: object, args: tuple[object, ...], kwargs: dict[str, Any]) -> None:
        if self._is_replaying():
            self.suppressed += 1
            return
        extra = {**_log_context.current(), **self.keys, **(kwargs.pop("extra", None) or {})}
        # The line is attributed to the caller of info(), not to this wrapper.
        getattr(self._target, level)(msg, *args, extra=extra, stacklevel=self._stacklevel, **kwargs)


_routed: set[str] = set()


def route_engine_logs_on_lambda(logger: Any) -> None:
    """``route_engine_logs(logger)`` once per execution environment, on Lambda only (locally the
    library's lines stay plain ``logging``, which tests and ``aetheris dev`` capture as usual)."""
    import os

    if logger.service in _routed or not os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        return
    _routed.add(logger.service)
    route_engine_logs(logger)


def route_engine_logs(logger: Any, names: Iterable[str] = ("aetheris",)) -> None:
    """Send the library's ``logging`` lines (``aetheris.worker``, ...) through the Powertools
    ``logger``: JSON, with the keys the handler appended (job id, seq, worker). Call it once per
    execution environment, on Lambda: it takes those loggers off the root logger (no double lines)."""
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    for name in names:
        logging.getLogger(name)  # registered, so the copy finds it even before its first line
    copy_config_to_registered_loggers(source_logger=logger, include=set(names))
