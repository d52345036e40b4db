"""Sweeper Lambda (EventBridge schedule): looks at every job whose moment to be looked at has come
(see ``aetheris/_engine/sweeper.py``), then publishes gauges: ``StuckJobs`` and the queue backlogs.

The gauges carry no dimensions (an alarm names them by namespace and metric alone), so they are
published by a ``Metrics`` of their own with no service: Powertools would otherwise add the
``service`` dimension to every metric it flushes with the counters.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from aetheris import _log_context, _operator_views, hosting
from aetheris import _observability as obs
from aetheris.events import JobStatus

logger = Logger(service="aetheris-sweeper")
# X-Ray on Lambda (its store calls as subsegments: the Tracer patches botocore); off locally.
tracer = Tracer(service="aetheris-sweeper")
logger.addFilter(_log_context.FILTER)  # (its own lines are about many jobs: they carry no job's keys)
metrics = Metrics(namespace="Aetheris", service="sweeper")

# Gauges (no dimensions): name -> (queue, depth field).
STUCK_JOBS = obs.Metric.STUCK_JOBS.value
OLDEST_PENDING_AGE = obs.Metric.OLDEST_PENDING_AGE.value
BACKLOG_GAUGES = {
    "StepQueueVisible": ("step", "visible"),
    "StepQueueInFlight": ("step", "in_flight"),
    "StepQueueDelayed": ("step", "delayed"),
    "StepDeadLetters": ("step_dlq", "visible"),
    "SignalQueueVisible": ("signal", "visible"),
    "SignalDeadLetters": ("signal_dlq", "visible"),
}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    obs.route_engine_logs_on_lambda(logger)  # the engine's per-job lines, with each job's keys
    runtime = hosting.runtime()
    report = runtime.sweep()
    metrics.add_metric(name="SweptJobsTicked", unit=MetricUnit.Count, value=len(report.ticked))
    metrics.add_metric(name="StalledJobsTicked", unit=MetricUnit.Count, value=len(report.stalled))
    # Finished jobs whose retention pass failed and was redone (see aetheris/_store/retention.py).
    metrics.add_metric(name="RetentionRepaired", unit=MetricUnit.Count, value=len(report.expired))
    # Live jobs whose items' TTLs it extended (they outlived half their retention horizon).
    metrics.add_metric(name="RetentionExtended", unit=MetricUnit.Count, value=len(report.extended))
    if report.stalled:  # a lost tick was recovered: worth a look (due timers are routine)
        logger.warning("ticked stalled jobs", extra={"jobs": report.stalled})
    if report.stuck:
        logger.warning("stuck jobs", extra={"jobs": report.stuck})
    if not report.complete:
        logger.warning("the sweep stopped at its limit; the rest come first in the next one")
    if report.due:
        logger.info("ticked parked jobs that are due", extra={"jobs": report.due})
    services = runtime.services
    depths = _operator_views.queue_depths(services.queue.client, _operator_views.queues(services))
    oldest = _operator_views.oldest_age(services.jobs.table, JobStatus.PENDING, services.clock.now())
    publish_gauges(len(report.stuck), depths, oldest)
    return report.as_dict()


def publish_gauges(
    stuck: int, depths: dict[str, dict[str, int]], oldest_pending: float | None = None
) -> None:
    """One EMF line, namespace ``Aetheris``, no dimensions."""
    gauges = EphemeralMetrics(namespace="Aetheris", service="")
    gauges.add_metric(name=STUCK_JOBS, unit=MetricUnit.Count, value=stuck)
    gauges.add_metric(name=OLDEST_PENDING_AGE, unit=MetricUnit.Seconds, value=oldest_pending or 0.0)
    for name, (queue, field) in BACKLOG_GAUGES.items():
        if queue in depths:
            gauges.add_metric(name=name, unit=MetricUnit.Count, value=depths[queue][field])
    gauges.flush_metrics()
