"""moto with ``aetheris_infra.moto_speedups`` answers exactly as DynamoDB (and plain moto) does.

The speed-ups change how moto finds a partition and how it undoes a failed transaction; these
tests pin the answers that must not change: a failed transaction leaves every item as it was
(updated, put and deleted ones alike), a successful one applies all, and a Query sees its own
partition only — in key order, both directions, with key conditions, limits and pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from aetheris._local import moto_speedups

TABLE = "speedups"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    moto_speedups.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
        )
        yield client


def put(client: Any, pk: str, sk: str, value: int) -> None:
    client.put_item(TableName=TABLE, Item={"pk": {"S": pk}, "sk": {"S": sk}, "v": {"N": str(value)}})


def everything(client: Any) -> list[tuple[str, str, str]]:
    items = client.scan(TableName=TABLE)["Items"]
    return sorted((i["pk"]["S"], i["sk"]["S"], i["v"]["N"]) for i in items)


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def test_transact_write_items_one_failed_condition_leaves_every_item_as_it_was(dynamodb: Any) -> None:
    put(dynamodb, "job", "a", 1)
    put(dynamodb, "job", "gone", 7)
    put(dynamodb, "other", "x", 3)
    before = everything(dynamodb)
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Update": {
                        "TableName": TABLE,
                        "Key": key("job", "a"),
                        "UpdateExpression": "SET v = :v",
                        "ExpressionAttributeValues": {":v": {"N": "2"}},
                    }
                },
                {"Put": {"TableName": TABLE, "Item": {**key("job", "new"), "v": {"N": "5"}}}},
                {"Delete": {"TableName": TABLE, "Key": key("job", "gone")}},
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": key("other", "x"),
                        "ConditionExpression": "v = :four",
                        "ExpressionAttributeValues": {":four": {"N": "4"}},
                    }
                },
            ]
        )
    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    reasons = [r["Code"] for r in raised.value.response["CancellationReasons"]]
    assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
    assert everything(dynamodb) == before


def test_transact_write_items_all_conditions_hold_applies_every_item(dynamodb: Any) -> None:
    put(dynamodb, "job", "a", 1)
    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": key("job", "a"),
                    "UpdateExpression": "SET v = :v",
                    "ConditionExpression": "v = :one",
                    "ExpressionAttributeValues": {":v": {"N": "2"}, ":one": {"N": "1"}},
                }
            },
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": {**key("job", "b"), "v": {"N": "9"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
    )
    assert everything(dynamodb) == [("job", "a", "2"), ("job", "b", "9")]


def test_transact_write_items_failed_first_item_returns_its_current_value(dynamodb: Any) -> None:
    put(dynamodb, "job", "a", 1)
    with pytest.raises(ClientError) as raised:
        dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Put": {
                        "TableName": TABLE,
                        "Item": {**key("job", "a"), "v": {"N": "9"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
                {"Put": {"TableName": TABLE, "Item": {**key("job", "b"), "v": {"N": "9"}}}},
            ]
        )
    first = raised.value.response["CancellationReasons"][0]
    assert first["Code"] == "ConditionalCheckFailed"
    assert first["Item"]["v"] == {"N": "1"}
    assert everything(dynamodb) == [("job", "a", "1")]


def test_query_one_partition_sees_only_its_items_in_key_order_with_pages(dynamodb: Any) -> None:
    for pk in ("before", "job", "after"):
        for n in range(7):
            put(dynamodb, pk, f"EV#{n:03d}", n)

    def query(**extra: Any) -> list[str]:
        found: list[str] = []
        start: dict[str, Any] | None = None
        while True:
            page = dynamodb.query(
                TableName=TABLE,
                KeyConditionExpression="pk = :pk AND sk BETWEEN :a AND :b",
                ExpressionAttributeValues={":pk": {"S": "job"}, ":a": {"S": "EV#002"}, ":b": {"S": "EV#005"}},
                ConsistentRead=True,
                **extra,
                **({"ExclusiveStartKey": start} if start else {}),
            )
            found += [i["sk"]["S"] for i in page["Items"]]
            start = page.get("LastEvaluatedKey")
            if start is None:
                return found

    assert query() == ["EV#002", "EV#003", "EV#004", "EV#005"]
    assert query(Limit=3) == ["EV#002", "EV#003", "EV#004", "EV#005"]
    assert query(ScanIndexForward=False, Limit=2) == ["EV#005", "EV#004", "EV#003", "EV#002"]


def test_query_unknown_partition_finds_nothing_and_creates_nothing(dynamodb: Any) -> None:
    put(dynamodb, "job", "a", 1)
    page = dynamodb.query(
        TableName=TABLE,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "nobody"}},
    )
    assert page["Items"] == []
    assert everything(dynamodb) == [("job", "a", "1")]


@pytest.mark.parametrize(("later", "kept"), [(59.0, True), (61.0, False)])
def test_sqs_receive_drops_a_message_past_the_queue_retention_period(
    later: float, kept: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sqs import models as sqs_models

    moto_speedups.install()
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="retained", Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="old")
        now = sqs_models.unix_time()
        monkeypatch.setattr(sqs_models, "unix_time", lambda *_: now + later)
        received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in received] == (["old"] if kept else [])
