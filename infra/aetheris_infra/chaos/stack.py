"""The driver's hands on one wave's stack, outside the runtime: reads of its tables and queues, and
the meddling with its messages (duplicate and stale ticks, duplicated and reordered messages).

All of it goes through clients without injected faults: what is read is the truth the checker
needs, and the meddling is a fault of its own, written to the fault log.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from aetheris._store.dynamo import from_dynamo
from aetheris._store.queue import Tick
from aetheris_infra.bootstrap import StackResources

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

QUEUED = ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible")
DELAYED = "ApproximateNumberOfMessagesDelayed"


class StackReader:
    def __init__(self, dynamodb: DynamoDBClient, sqs: SQSClient, stack: StackResources) -> None:
        self.dynamodb = dynamodb
        self.sqs = sqs
        self.stack = stack

    def job_items(self, job_ids: list[str]) -> list[dict[str, Any]]:
        """The job items (``EW#JOB``) of ``job_ids``, read consistently, 100 per request."""
        table = self.stack.jobs_table
        items: list[dict[str, Any]] = []
        for chunk in range(0, len(job_ids), 100):
            keys = [{"pk": {"S": job_id}, "sk": {"S": "EW#JOB"}} for job_id in job_ids[chunk : chunk + 100]]
            request: dict[str, Any] = {table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                answer = self.dynamodb.batch_get_item(RequestItems=request)
                items.extend(from_dynamo(raw) or {} for raw in answer["Responses"].get(table, []))
                request = dict(answer.get("UnprocessedKeys") or {})
        return items

    def scan(self, table: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = self.dynamodb.scan(**request)
            items.extend(i for i in (from_dynamo(raw) for raw in page.get("Items", [])) if i)
            if not page.get("LastEvaluatedKey"):
                return items
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def queued(self, url: str, delayed: bool = True) -> int:
        """Messages on the queue: visible, in flight and (with ``delayed``) not yet due."""
        names: list[Any] = [*QUEUED, DELAYED] if delayed else list(QUEUED)
        attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return sum(int(attributes.get(name, "0")) for name in names)

    def dead_letters(self, url: str, batches: int = 20) -> dict[str, int]:
        """Job id → messages of that job on a dead-letter queue (read, left there; nobody consumes it)."""
        by_job: dict[str, int] = {}
        for _ in range(batches):
            messages = self.sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60
            ).get("Messages", [])
            if not messages:
                break
            for message in messages:
                try:
                    job_id = str(json.loads(message["Body"]).get("job_id", "?"))
                except (ValueError, AttributeError):
                    job_id = "?"
                by_job[job_id] = by_job.get(job_id, 0) + 1
        return by_job


class Meddler:
    """Duplicate and stale ticks, duplicated and reordered queue messages; each one a fault line."""

    def __init__(self, reader: StackReader, rng: random.Random, fault: Callable[..., None]) -> None:
        self.reader = reader
        self.random = rng
        self.fault = fault

    def duplicate_tick(self, index: int, job_id: str) -> None:
        """Send the job a stale tick (its last committed slot) and a duplicate of its next one."""
        stack, sqs = self.reader.stack, self.reader.sqs
        items = self.reader.job_items([job_id])
        if not items:
            return
        last = int(items[0].get("last_seq", 0))
        for kind, seq in (("stale_tick", last), ("duplicate_tick", last + 1)):
            body = Tick(job_id=job_id, seq=seq).model_dump_json()
            sqs.send_message(QueueUrl=stack.step_queue_url, MessageBody=body)
            self.fault(kind, job=index, seq=seq)

    def meddle(self) -> None:
        """Receive a few messages; copy some (duplicates), show each again after a random delay."""
        stack, sqs = self.reader.stack, self.reader.sqs
        url = self.random.choice((stack.step_queue_url, stack.signal_queue_url))
        count = self.random.randint(1, 5)
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=count).get("Messages", [])
        queue = url.rsplit("/", 1)[-1]
        for message in messages:
            if self.random.random() < 0.5:
                sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
                self.fault("queue_duplicate", queue=queue)
            delay = self.random.randint(0, 2)
            try:
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
                )
            except ClientError as gone:
                # Our receive outlived its visibility timeout: a worker has it now, or deleted it.
                if gone.response["Error"]["Code"] not in ("ReceiptHandleIsInvalid", "MessageNotInflight"):
                    raise
                continue
            self.fault("queue_reorder", queue=queue, delay_s=delay)
