"""The step queue: a message means "advance job J at slot n"; delays carry short timers and backoff."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from aetheris.errors import PayloadTooLarge

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_DELAY = timedelta(minutes=15)  # SQS DelaySeconds limit
# SQS's classic message limit (queues may allow 1 MiB since 2025; a queue made earlier keeps 256 KiB).
MAX_MESSAGE_BYTES = 256 * 1024


class Tick(BaseModel):
    """The step-queue message body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)
    # A fan-out branch's tick: "<op>.<branch>"; ``seq`` is then the slot in that branch's own log.
    branch: str | None = Field(default=None, pattern=r"^[0-9]{1,6}\.[0-9]{1,6}$")
    # The grant of slot ``seq`` made by the commit that sent this tick (``_store/log.py``): its
    # holder needs no claim write.
    grant: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")


class StepQueue:
    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, tick: Tick, delay: timedelta = timedelta(0)) -> None:
        seconds = int(min(max(delay, timedelta(0)), MAX_DELAY).total_seconds())
        body = tick.model_dump_json(exclude_none=True)
        self.client.send_message(QueueUrl=self.url, MessageBody=body, DelaySeconds=seconds)


class SignalMessage(BaseModel):
    """The signal-queue message body: a signal accepted by the API, on its way to the inbox.

    ``payload`` is the value itself (embedded as JSON, so the message is the payload's size plus a
    small envelope); ingest stores the same dump of it that the sender checked and stored.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=128)
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-/]{1,100}$")
    signal_id: str = Field(min_length=1, max_length=128)
    payload: Any = None
    # Set instead of ``payload`` when the payload was offloaded to S3 (see _store/payloads.py).
    payload_ref: str | None = None
    sent_at_ms: int = Field(ge=0)


class SignalQueue:
    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, message: SignalMessage) -> None:
        """Send the message; ``PayloadTooLarge`` (nothing sent) if it is over ``MAX_MESSAGE_BYTES``."""
        body = message.model_dump_json()
        size = len(body.encode())
        if size > MAX_MESSAGE_BYTES:
            raise PayloadTooLarge("signal message (payload and envelope)", size, MAX_MESSAGE_BYTES)
        self.client.send_message(QueueUrl=self.url, MessageBody=body)
