"""A fixed sequence of DynamoDB and SQS calls on moto, printed as JSON: the answers, errors included.

``test_moto_differential.py`` runs it in fresh processes — with ``--speedups`` (our patches to
moto installed) and without, and with ``--direct`` (the clients answered by
``aetheris._local.moto_direct``, no HTTP layer) — and requires the same output. Every update
expression runs more than once, so the patches' memories are used, and the same expression comes
back with names or a table under which moto's checks must refuse it. The output also says how many
calls went through moto's HTTP stubber (``wire_calls``): with ``--direct``, none should.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws

S = "S"


def main() -> None:
    if "--speedups" in sys.argv:
        from aetheris._local import moto_speedups

        moto_speedups.install()
    from moto.core.models import botocore_stubber

    wire_calls = [0]
    process_request = botocore_stubber.process_request

    def counted(request: Any) -> Any:
        wire_calls[0] += 1
        return process_request(request)

    botocore_stubber.process_request = counted  # type: ignore[method-assign]
    with mock_aws():
        answers = scenario(direct="--direct" in sys.argv)
    print(json.dumps({"answers": answers, "wire_calls": wire_calls[0]}, sort_keys=True, default=repr))


def scenario(direct: bool = False) -> list[Any]:
    db = boto3.client("dynamodb", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    if direct:
        from aetheris._local import moto_direct

        moto_direct.attach(db)
        moto_direct.attach(sqs)
    for name, keys in (("t", ("pk", "sk")), ("h", ("id",))):
        schema = [{"AttributeName": keys[0], "KeyType": "HASH"}]
        attrs = [{"AttributeName": keys[0], "AttributeType": S}]
        if len(keys) > 1:
            schema.append({"AttributeName": keys[1], "KeyType": "RANGE"})
            attrs.append({"AttributeName": keys[1], "AttributeType": S})
        db.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST", KeySchema=schema, AttributeDefinitions=attrs
        )
    out: list[Any] = []

    def call(operation: str, **params: Any) -> None:
        try:
            answer = getattr(db, operation)(**params)
            answer.pop("ResponseMetadata", None)
            out.append([operation, answer])
        except ClientError as error:
            out.append([operation, error.response["Error"], error.response.get("Item")])
            extra = {
                k: v for k, v in error.response.items() if k not in ("Error", "ResponseMetadata", "Item")
            }
            out.append(
                [
                    type(error).__name__,
                    str(error),
                    extra,
                    error.response["ResponseMetadata"]["HTTPStatusCode"],
                ]
            )

    key = {"pk": {S: "job"}, "sk": {S: "0001"}}
    values = {":one": {"N": "1"}, ":s": {S: "x"}, ":l": {"L": [{S: "a"}]}, ":ss": {"SS": ["p", "q"]}}
    names = {"#a": "alpha", "#b": "beta", "#c": "count"}
    updates = [
        ("SET #a = :s, #b = if_not_exists(#b, :one), #c = :one", names, values, None),
        ("SET #c = #c + :one, #b = list_append(if_not_exists(tags, :l), :l)", names, values, None),
        ("ADD #c :one, letters :ss REMOVE #a", names, values, None),
        ("DELETE letters :ss", {}, {":ss": {"SS": ["p"]}}, None),
        ("SET #a = :s", names, values, "attribute_not_exists(pk)"),  # fails: the item exists
        ("SET #a = :s", names, values, "#c > :one"),
        ("SET #a = :s, #b = :s", {"#a": "alpha", "#b": "alpha"}, values, None),  # the same path twice
        ("SET #a = :s, #b = :s", {"#a": "alpha", "#b": "beta"}, values, None),
        ("SET #a = :s SET #b = :s", names, values, None),  # two SET clauses
        ("SET #a = :s", {"#a": "sk"}, values, None),  # a key attribute
        ("SET #a = :s", {"#a": "gamma"}, values, None),
        ("SET #a = :one + :s", names, values, None),  # a string in arithmetic
        ("SET #a = :missing", names, values, None),
        ("SET nested.deep = :s", {}, values, None),  # a path into a missing map
        ("SET m = :m", {}, {":m": {"M": {"deep": {S: "v"}}}}, None),
        ("SET m.deep = :s, m.zz = :one", {}, values, None),
        ("SET m.deep = :s, m = :s", {}, values, None),  # overlapping paths
    ]

    def used(placeholders: dict[str, Any], *texts: str | None) -> dict[str, Any]:
        return {k: v for k, v in placeholders.items() if any(re.search(f"{k}\\b", t or "") for t in texts)}

    for _ in range(2):  # the second round runs on whatever the first one remembered
        for expression, attr_names, attr_values, condition in updates:
            params: dict[str, Any] = {
                "TableName": "t",
                "Key": key,
                "UpdateExpression": expression,
                "ExpressionAttributeValues": used(attr_values, expression, condition),
                "ReturnValues": "ALL_NEW",
            }
            names_used = used(attr_names, expression, condition)
            if names_used:
                params["ExpressionAttributeNames"] = names_used
            if condition:
                params["ConditionExpression"] = condition
                params["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
            if not params["ExpressionAttributeValues"]:
                del params["ExpressionAttributeValues"]
            call("update_item", **params)
        # The same expression on a table whose key it does name: refused there, accepted on "t".
        call(
            "update_item",
            TableName="h",
            Key={"id": {S: "k"}},
            UpdateExpression="SET #a = :s",
            ExpressionAttributeNames={"#a": "id"},
            ExpressionAttributeValues={":s": {S: "x"}},
        )
        call(
            "update_item",
            TableName="h",
            Key={"id": {S: "k"}},
            UpdateExpression="SET #a = :s",
            ExpressionAttributeNames={"#a": "sk"},
            ExpressionAttributeValues={":s": {S: "x"}},
        )
        call(
            "transact_write_items",
            TransactItems=[
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {S: "job"}, "sk": {S: f"{n:04d}"}},
                        "UpdateExpression": "SET #c = if_not_exists(#c, :one) + :one",
                        "ExpressionAttributeNames": {"#c": "count"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                }
                for n in range(2, 5)
            ],
        )
        call(
            "transact_write_items",
            TransactItems=[
                {
                    "Update": {
                        "TableName": "t",
                        "Key": {"pk": {S: "job"}, "sk": {S: "0002"}},
                        "UpdateExpression": "SET #c = :one",
                        "ExpressionAttributeNames": {"#c": "count"},
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                }
            ],
        )
        call("get_item", TableName="t", Key=key, ConsistentRead=True)
        call(
            "query",
            TableName="t",
            KeyConditionExpression="pk = :p AND sk > :s",
            ExpressionAttributeValues={":p": {S: "job"}, ":s": {S: "0001"}},
            ScanIndexForward=False,
            Limit=2,
        )
        call("scan", TableName="t")
    odd_values(call)
    sqs_calls(sqs, out)
    url = sqs.create_queue(QueueName="q")["QueueUrl"]
    sqs.send_message(
        QueueUrl=url,
        MessageBody="hello",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "tick"}},
    )
    received = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["All"],
    )["Messages"]
    for message in received:
        out.append(
            ["sqs", message["Body"], message["MD5OfBody"], message["MessageAttributes"], sorted(message)]
        )
    out.append(
        ["sqs-attrs", sorted(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])]
    )
    return out


def odd_values(call: Any) -> None:
    """Values that stress a response's types: non-ASCII, huge and tiny numbers, nested maps and
    lists, binary (and binary sets), empty strings, sets; conditional failures returning the item;
    transaction cancellations with reasons; paging with Limit/ExclusiveStartKey; capacity."""
    odd = {
        "pk": {S: "odd"},
        "sk": {S: "é—中文🙂"},
        "big": {"N": "123456789012345678901234567890123456.5"},
        "tiny": {"N": "-0.000000000000000000000000000001"},
        "bin": {"B": bytes(range(256))},
        "bins": {"BS": [b"\x00", b"\xff\xfe", b"plain"]},
        "empty": {S: ""},
        "nums": {"NS": ["1", "-2.5", "1e10"]},
        "flag": {"BOOL": False},
        "nothing": {"NULL": True},
        "nested": {"M": {"ü": {"L": [{"M": {"deep": {"L": [{"N": "0"}, {"B": b"\x01"}, {S: "\u2028"}]}}}]}}},
    }
    call("put_item", TableName="t", Item=odd, ReturnConsumedCapacity="TOTAL")
    deep: dict[str, Any] = {S: "bottom"}
    for level in range(31):  # DynamoDB allows 32 levels of nesting: maps and lists, alternating
        deep = {"M": {"d": deep}} if level % 2 else {"L": [deep]}
    deep_key = {"pk": {S: "deep"}, "sk": {S: "x"}}
    call("put_item", TableName="t", Item={**deep_key, "v": deep})
    call("get_item", TableName="t", Key=deep_key)
    call("put_item", TableName="t", Item={**deep_key, "v": {S: "x" * 410_000}})  # over 400 KB: refused
    odd_key = {"pk": odd["pk"], "sk": odd["sk"]}
    call("get_item", TableName="t", Key=odd_key, ReturnConsumedCapacity="INDEXES")
    call(
        "put_item",
        TableName="t",
        Item=odd,
        ConditionExpression="attribute_not_exists(pk)",
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    call("put_item", TableName="t", Item=odd, ReturnValues="ALL_OLD")
    call(
        "update_item",
        TableName="t",
        Key=odd_key,
        UpdateExpression="SET #n.#u = :v ADD bins :b",
        ExpressionAttributeNames={"#n": "nested", "#u": "ü"},
        ExpressionAttributeValues={":v": {"B": b"\x00\x01"}, ":b": {"BS": [b"more"]}},
        ReturnValues="UPDATED_NEW",
        ReturnConsumedCapacity="TOTAL",
    )
    call(
        "update_item",
        TableName="t",
        Key=odd_key,
        UpdateExpression="SET flag = :t",
        ConditionExpression="big < :small",
        ExpressionAttributeValues={":t": {"BOOL": True}, ":small": {"N": "1"}},
        ReturnValuesOnConditionCheckFailure="ALL_OLD",
    )
    call(
        "transact_write_items",
        TransactItems=[
            {"Put": {"TableName": "t", "Item": {"pk": {S: "odd"}, "sk": {S: "new"}}}},
            {
                "ConditionCheck": {
                    "TableName": "t",
                    "Key": odd_key,
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
            {
                "Update": {
                    "TableName": "t",
                    "Key": {"pk": {S: "odd"}, "sk": {S: "other"}},
                    "UpdateExpression": "SET v = :v",
                    "ExpressionAttributeValues": {":v": {S: "x"}},
                }
            },
        ],
    )
    call("get_item", TableName="t", Key={"pk": {S: "odd"}, "sk": {S: "new"}})  # rolled back: absent
    for n in range(7):
        call("put_item", TableName="t", Item={"pk": {S: "page"}, "sk": {S: f"{n:02d}"}, "n": {"N": str(n)}})
    start: dict[str, Any] | None = None
    for _ in range(5):  # pages of 3: 3, 3, 1, then no LastEvaluatedKey
        page: dict[str, Any] = {
            "TableName": "t",
            "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {S: "page"}, ":odd": {"N": "1"}},
            "FilterExpression": "NOT n = :odd",
            "Limit": 3,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if start is not None:
            page["ExclusiveStartKey"] = start
        call("query", **page)
        start = {"pk": {S: "page"}, "sk": {S: f"{3 * (_ + 1) - 1:02d}"}}
    call(
        "query",
        TableName="t",
        KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": {S: "page"}},
        Select="COUNT",
    )
    call("batch_get_item", RequestItems={"t": {"Keys": [odd_key, {"pk": {S: "page"}, "sk": {S: "01"}}]}})
    call("delete_item", TableName="t", Key={"pk": {S: "page"}, "sk": {S: "00"}}, ReturnValues="ALL_OLD")
    call("get_item", TableName="missing", Key=odd_key)  # ResourceNotFoundException
    call("get_item", TableName="t", Key={"pk": {S: "odd"}})  # ValidationException: half a key
    call("query", TableName="t", KeyConditionExpression="pk = :p")  # ValidationException: no value


def sqs_calls(sqs: Any, out: list[Any]) -> None:
    """Visibility, receive counts, batches, bad handles and a missing queue, without ids (random)."""

    def record(name: str, answer: Any) -> None:
        out.append([name, scrub(answer)])

    def attempt(name: str, **params: Any) -> Any:
        try:
            answer = getattr(sqs, name)(**params)
        except ClientError as error:
            out.append([name, type(error).__name__, error.response["Error"], str(error)])
            return None
        record(name, answer)
        return answer

    url = sqs.create_queue(QueueName="visible", Attributes={"VisibilityTimeout": "30"})["QueueUrl"]
    sqs.send_message_batch(
        QueueUrl=url,
        Entries=[{"Id": str(i), "MessageBody": f"ü{i}", "DelaySeconds": 0} for i in range(3)],
    )
    first = attempt(
        "receive_message", QueueUrl=url, MaxNumberOfMessages=2, MessageSystemAttributeNames=["All"]
    )
    attempt("receive_message", QueueUrl=url, MaxNumberOfMessages=10)  # one left visible
    for message in (first or {}).get("Messages", []):
        attempt(
            "change_message_visibility",
            QueueUrl=url,
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=0,
        )
    again = attempt(
        "receive_message",
        QueueUrl=url,
        MaxNumberOfMessages=10,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )
    handles = [m["ReceiptHandle"] for m in (again or {}).get("Messages", [])]
    attempt(
        "delete_message_batch",
        QueueUrl=url,
        Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)]
        + [{"Id": "bad", "ReceiptHandle": "nope"}],
    )
    attempt("change_message_visibility", QueueUrl=url, ReceiptHandle="nope", VisibilityTimeout=0)
    attempt("get_queue_attributes", QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "QueueArn"])
    attempt("get_queue_attributes", QueueUrl=url + "-missing", AttributeNames=["QueueArn"])
    attempt("get_queue_url", QueueName="no-such-queue")
    attempt("send_message", QueueUrl=url, MessageBody="x", DelaySeconds=901)  # out of range


_RANDOM = (
    "MessageId",
    "ReceiptHandle",
    "RequestId",
    "SenderId",
    "SentTimestamp",
    "ApproximateFirstReceiveTimestamp",
)


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: ("<random>" if k in _RANDOM else scrub(v)) for k, v in value.items() if k != "ResponseMetadata"
        }
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


if __name__ == "__main__":
    main()
