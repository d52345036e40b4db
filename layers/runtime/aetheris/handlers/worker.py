"""Step worker Lambda handler: an SQS batch of ticks, one operation per job, partial batch failures.

It only adapts the event: each record's body is a tick and the runtime decides the outcome. A
deferred tick is raised as a failure so SQS shows it again after the visibility timeout; a
malformed body fails too, and reaches the DLQ after the queue's max receives instead of vanishing.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from aetheris import hosting

logger = Logger(service="aetheris-worker")
metrics = Metrics(namespace="Aetheris", service="worker")
processor = BatchProcessor(event_type=EventType.SQS)


class TickDeferred(Exception):
    """Report this record as failed: it must come back after the visibility timeout."""


def record_handler(record: SQSRecord, lambda_context: LambdaContext | None = None) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    time_left = None
    if lambda_context is not None:
        time_left = timedelta(milliseconds=lambda_context.get_remaining_time_in_millis())
    outcome = hosting.runtime().handle_tick(record.body, receive_count, time_left)
    metrics.add_metric(name=f"Tick_{outcome.value}", unit=MetricUnit.Count, value=1)
    logger.debug("tick handled", extra={"outcome": outcome.value, "message_id": record.message_id})
    if not outcome.acknowledge:
        raise TickDeferred(f"tick deferred ({outcome.value})")


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]
        event=event, record_handler=record_handler, processor=processor, context=context
    )
