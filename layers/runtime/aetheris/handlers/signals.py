"""Signal-ingest Lambda: signal queue → inbox (once per signal id) → wake the waiting job.

Only then does SQS delete the message: a crash anywhere before that leaves the message to be
redelivered, and the redelivery completes the work (the inbox write is a no-op the second time).
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from aetheris import _log_context, hosting
from aetheris import _observability as obs

logger = Logger(service="aetheris-signals")
# X-Ray on Lambda (its store calls as subsegments: the Tracer patches botocore); off locally.
tracer = Tracer(service="aetheris-signals")
logger.addFilter(_log_context.FILTER)  # the record's keys, and the job type once ingest read the job
metrics = Metrics(namespace=obs.NAMESPACE, service="signals")
processor = BatchProcessor(event_type=EventType.SQS)
# Outcomes of a signal id's first landing in the inbox (a duplicate or a late one is not accepted).
_ACCEPTED = ("woke", "stored")


def record_handler(record: SQSRecord) -> None:
    keys = {**_signal_keys(record.body), "message_id": record.message_id}
    with _log_context.tick(**keys):  # cleared when the record is done
        outcome = hosting.runtime().ingest_signal(record.body)
        metrics.add_metric(name=obs.signal_metric(outcome), unit=MetricUnit.Count, value=1)
        if outcome in _ACCEPTED:
            metrics.add_metric(name=obs.Metric.SIGNALS_ACCEPTED, unit=MetricUnit.Count, value=1)
        logger.debug("signal ingested", extra={"outcome": outcome})


def _signal_keys(body: str) -> dict[str, Any]:
    """``job_id``, ``signal`` and ``signal_id`` of a signal message, for the log (if it is one)."""
    try:
        message = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(message, dict):
        return {}
    names = {"job_id": "job_id", "name": "signal", "signal_id": "signal_id"}
    return {key: message[field] for field, key in names.items() if isinstance(message.get(field), str)}


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    obs.route_engine_logs_on_lambda(logger)
    return process_partial_response(  # type: ignore[return-value]
        event=event, record_handler=record_handler, processor=processor, context=context
    )
