"""``SerialMotoServer.serve_in_process``: this process's clients reach the server's moto backends
without HTTP — one store with the HTTP clients of other processes, and still one request at a time.

``aetheris dev`` (``LocalStack``) runs its handlers on such clients; a worker process started with
``LocalStack.environment()`` talks HTTP to the same server. Both must see one store, and every
request — in-process or over HTTP — must hold the server's lock, or two conditional writes could
interleave inside moto (which does not lock) and both pass.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto.core.botocore_stubber import BotocoreStubber

from aetheris._local.moto_server import SerialMotoServer

CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class CountingLock:
    """The server's lock, counting who took it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.taken = inner, 0
        self._count = threading.Lock()

    def __enter__(self) -> None:
        self.inner.acquire()
        with self._count:
            self.taken += 1

    def __exit__(self, *exc: object) -> None:
        self.inner.release()


@pytest.fixture
def server() -> Iterator[SerialMotoServer]:
    with SerialMotoServer() as running:
        yield running


def clients(server: SerialMotoServer, service: str) -> tuple[Any, Any]:
    over_http = boto3.client(service, endpoint_url=server.url, **CREDENTIALS)  # type: ignore[call-overload]
    in_process = server.serve_in_process(boto3.client(service, **CREDENTIALS))  # type: ignore[call-overload]
    return over_http, in_process


def test_in_process_and_http_clients_share_one_dynamodb_store_and_its_conditions(
    server: SerialMotoServer,
) -> None:
    over_http, in_process = clients(server, "dynamodb")
    over_http.create_table(
        TableName="t",
        BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )
    in_process.put_item(TableName="t", Item={"pk": {"S": "a"}, "v": {"N": "1"}})
    assert over_http.get_item(TableName="t", Key={"pk": {"S": "a"}})["Item"]["v"] == {"N": "1"}
    # A condition written over HTTP is decided on the item the in-process client wrote, and back.
    with pytest.raises(ClientError) as refused:
        over_http.put_item(
            TableName="t",
            Item={"pk": {"S": "a"}, "v": {"N": "2"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    over_http.put_item(TableName="t", Item={"pk": {"S": "b"}, "v": {"N": "3"}})
    with pytest.raises(in_process.exceptions.ConditionalCheckFailedException):
        in_process.put_item(
            TableName="t",
            Item={"pk": {"S": "b"}, "v": {"N": "4"}},
            ConditionExpression="attribute_not_exists(pk)",
        )
    assert in_process.get_item(TableName="t", Key={"pk": {"S": "b"}})["Item"]["v"] == {"N": "3"}


def test_in_process_and_http_clients_share_one_queue(server: SerialMotoServer) -> None:
    over_http, in_process = clients(server, "sqs")
    url = over_http.create_queue(QueueName="q")["QueueUrl"]
    in_process.send_message(QueueUrl=url, MessageBody="from this process")
    received = over_http.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["from this process"]
    over_http.delete_message(QueueUrl=url, ReceiptHandle=received[0]["ReceiptHandle"])
    assert in_process.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []) == []


def test_every_request_in_process_or_over_http_holds_the_server_lock(server: SerialMotoServer) -> None:
    over_http, in_process = clients(server, "sqs")
    counting = CountingLock(server.lock)
    server.lock = counting  # type: ignore[assignment]
    url = over_http.create_queue(QueueName="q")["QueueUrl"]
    in_process.send_message(QueueUrl=url, MessageBody="one")
    in_process.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])
    over_http.receive_message(QueueUrl=url)
    assert counting.taken == 4


def test_in_process_dynamodb_and_sqs_calls_skip_the_stubber_and_still_hold_the_lock(
    server: SerialMotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``aetheris dev``'s signal → resume rides on these calls: moto's handlers answer them directly
    (``moto_direct``), never through the stubber's HTTP-shaped round trip — and still one at a time."""
    stubbed: list[str] = []
    process_request = BotocoreStubber.process_request

    def counted(self: BotocoreStubber, request: Any) -> Any:
        stubbed.append(str(request.url))
        return process_request(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", counted)
    over_http, in_process = clients(server, "sqs")
    url = over_http.create_queue(QueueName="q")["QueueUrl"]
    counting = CountingLock(server.lock)
    server.lock = counting  # type: ignore[assignment]
    in_process.send_message(QueueUrl=url, MessageBody="direct")
    received = in_process.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["direct"]
    assert stubbed == [] and counting.taken == 2
    monkeypatch.setenv("AETHERIS_MOTO_DIRECT", "0")  # switched off: the stubber serves them again
    _, wired = clients(server, "sqs")
    wired.send_message(QueueUrl=url, MessageBody="stubbed")
    assert len(stubbed) == 1 and counting.taken == 3
