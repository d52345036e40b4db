"""The step queue: a message means "advance job J at slot n"; delays carry short timers and backoff."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

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
