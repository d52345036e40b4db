"""The step queue: a message means "advance job J at slot n"; delays carry short timers and backoff."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MAX_DELAY = timedelta(minutes=15)  # SQS DelaySeconds limit


class Tick(BaseModel):
    """The step-queue message body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=128)
    seq: int = Field(ge=0)


class StepQueue:
    def __init__(self, client: SQSClient, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, tick: Tick, delay: timedelta = timedelta(0)) -> None:
        seconds = int(min(max(delay, timedelta(0)), MAX_DELAY).total_seconds())
        self.client.send_message(QueueUrl=self.url, MessageBody=tick.model_dump_json(), DelaySeconds=seconds)


class SignalMessage(BaseModel):
    """The signal-queue message body: a signal accepted by the API, on its way to the inbox."""

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
        self.client.send_message(QueueUrl=self.url, MessageBody=message.model_dump_json())
