"""Step worker Lambda handler: an SQS batch of ticks, one operation per job, partial batch failures.

It only adapts the event: each record's body is a tick and the runtime decides the outcome.

* A deferred tick (another worker may have died holding the job) is *reported* in
  ``batchItemFailures`` so SQS shows it again after the visibility timeout — without raising: a
  batch whose only record is deferred is routine, and a raise there would make Powertools fail the
  whole invocation (every record failed), which Lambda counts as an error and the worker-errors
  alarm pages on.
* A malformed body, or an error the runtime raises, fails its record by raising: it reaches the DLQ
  after the queue's max receives instead of vanishing, and a batch in which every record raised is
  an invocation error, as it should be (something is broken).

Every log line of a record — this handler's, the engine's (routed through this logger on Lambda,
``_observability.route_engine_logs``), the job's ``ctx.logger`` / ``sctx.logger`` — carries the
record's tick keys: ``job_id``, ``seq``, ``worker_id``, ``message_id``, and what the engine learns
(``job_type``, ``fence``, ``attempt``, ``step``; ``aetheris._log_context``), cleared when the record
is done. Each tick's outcome is counted (``Tick_<outcome>``, lease conflicts, stale-fence
rejections) and the engine's own samples are published after the record.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from aetheris import _log_context, hosting
from aetheris import _observability as obs

SERVICE = "worker"
logger = Logger(service="aetheris-worker")
logger.addFilter(_log_context.FILTER)  # its own lines carry the tick keys too
metrics = Metrics(namespace=obs.NAMESPACE, service=SERVICE)
# Patches botocore: every DynamoDB, SQS and S3 call of a tick is an X-Ray subsegment (off locally).
tracer = Tracer(service="aetheris-worker")
processor = BatchProcessor(event_type=EventType.SQS)
# Message ids of this invocation's deferred records (one invocation at a time per module import).
_deferred: list[str] = []


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    time_left = None
    if lambda_context is not None:
        time_left = timedelta(milliseconds=lambda_context.get_remaining_time_in_millis())
    runtime = hosting.runtime()
    keys = {**_tick_keys(record.body), "worker_id": runtime.worker_id, "message_id": record.message_id}
    with _log_context.tick(**keys):  # cleared when the record is done: the next one is another job's
        outcome = runtime.handle_tick(record.body, receive_count, time_left)
        metrics.add_metric(name=obs.tick_metric(outcome.value), unit=MetricUnit.Count, value=1)
        obs.publish(metrics, obs.tick_samples(outcome.value), SERVICE)
        telemetry: obs.Telemetry | None = getattr(runtime.services, "telemetry", None)
        if telemetry is not None:
            obs.publish(metrics, telemetry.drain(), SERVICE)
        logger.debug("tick handled", extra={"outcome": outcome.value, "receive_count": receive_count})
        if not outcome.acknowledge:
            logger.info("tick deferred: it comes back after the visibility timeout")
            _deferred.append(record.message_id)


def _tick_keys(body: str) -> dict[str, Any]:
    """``job_id`` and ``seq`` of a tick body, for the log; nothing if it is not one (it fails anyway)."""
    try:
        tick = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(tick, dict):
        return {}
    return {k: tick[k] for k in ("job_id", "seq") if isinstance(tick.get(k), str | int)}


def with_deferred(answer: dict[str, Any], deferred: list[str]) -> dict[str, Any]:
    """The batch response with the deferred records added to ``batchItemFailures``."""
    failures = list(answer.get("batchItemFailures", []))
    reported = {f["itemIdentifier"] for f in failures}
    failures += [{"itemIdentifier": m} for m in deferred if m not in reported]
    return {**answer, "batchItemFailures": failures}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    obs.route_engine_logs_on_lambda(logger)
    _deferred.clear()
    answer: dict[str, Any] = process_partial_response(  # type: ignore[assignment]
        event=event, record_handler=record_handler, processor=processor, context=context
    )
    return with_deferred(answer, _deferred)
