"""Signal-ingest Lambda: signal queue → inbox (once per signal id) → wake the waiting job.

Only then does SQS delete the message: a crash anywhere before that leaves the message to be
redelivered, and the redelivery completes the work (the inbox write is a no-op the second time).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from aetheris import hosting

logger = Logger(service="aetheris-signals")
metrics = Metrics(namespace="Aetheris", service="signals")
processor = BatchProcessor(event_type=EventType.SQS)


def record_handler(record: SQSRecord) -> None:
    outcome = hosting.runtime().ingest_signal(record.body)
    metrics.add_metric(name=f"Signal_{outcome}", unit=MetricUnit.Count, value=1)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(  # type: ignore[return-value]
        event=event, record_handler=record_handler, processor=processor, context=context
    )
