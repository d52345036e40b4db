"""A local SQS event source mapping: receive a batch, call the real handler, delete what it acked.

Lambda's semantics, reproduced on real SQS (moto or LocalStack): records reported in
``batchItemFailures`` stay on the queue; if the handler raises — or dies, as a simulated crash
does — nothing is deleted and the whole batch comes back after the visibility timeout, with its
``ApproximateReceiveCount`` grown, and reaches the DLQ after the queue's max receives.

Tests run on a fake clock, so instead of waiting out visibility timeouts they call
``release_in_flight()``, which makes the undeleted messages visible now (``ChangeMessageVisibility``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aetheris._local.lambda_events import LocalLambdaContext, sqs_event

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class PollResult:
    received: int = 0
    deleted: int = 0
    failed: int = 0
    crashed: BaseException | None = None


@dataclass
class SqsEventSource:
    sqs: SQSClient
    queue_url: str
    handler: Handler
    batch_size: int = 10
    region: str = "us-east-1"
    # Exceptions that mean "the process died" rather than "the invocation errored"; both leave the
    # batch on the queue, but a death is reported to the caller instead of logged.
    deaths: tuple[type[BaseException], ...] = ()
    in_flight: dict[str, str] = field(default_factory=dict)  # message id → receipt handle
    _arn: str = ""

    @property
    def queue_arn(self) -> str:
        if not self._arn:
            attrs = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
            self._arn = attrs["Attributes"]["QueueArn"]
        return self._arn

    def poll_once(self, wait_seconds: int = 0) -> PollResult:
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=self.batch_size,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["All"],
        )
        messages: list[dict[str, Any]] = list(response.get("Messages", []))  # type: ignore[arg-type]
        result = PollResult(received=len(messages))
        if not messages:
            return result
        for message in messages:
            self.in_flight[message["MessageId"]] = message["ReceiptHandle"]
        context = LocalLambdaContext(aws_request_id=str(uuid.uuid4()))
        try:
            answer = self.handler(sqs_event(messages, self.queue_arn, self.region), context)
        except self.deaths as death:
            result.crashed = death
            return result
        except Exception as error:  # noqa: BLE001 - an erroring invocation: Lambda retries the batch
            result.crashed = error
            return result
        failed = {f["itemIdentifier"] for f in (answer or {}).get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        for message in done:
            self.in_flight.pop(message["MessageId"], None)
        result.deleted, result.failed = len(done), len(failed)
        return result

    def release_in_flight(self) -> int:
        """Make every received-but-undeleted message visible again now (its visibility timed out)."""
        released = 0
        for message_id, receipt in list(self.in_flight.items()):
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
            )
            del self.in_flight[message_id]
            released += 1
        return released
