"""A fixed sequence of DynamoDB and SQS calls on moto, printed as JSON: the answers, errors included.

``test_moto_differential.py`` runs it twice in fresh processes — with ``--speedups`` (our patches to
moto installed) and without — and requires the same output. Every update expression runs more
than once, so the patches' memories are used, and the same expression comes back with names or a
table under which moto's checks must refuse it.
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
    with mock_aws():
        print(json.dumps(scenario(), sort_keys=True, default=str))


def scenario() -> list[Any]:
    db = boto3.client("dynamodb", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
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


if __name__ == "__main__":
    main()
