"""Thin boto3 DynamoDB client wrapper: typed (de)serialization and conditional writes.

Every conditional write asks for ``ReturnValuesOnConditionCheckFailure=ALL_OLD`` and turns
``ConditionalCheckFailedException`` into ``ConditionFailed`` carrying the current item — here, at
the adapter boundary, and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from aetheris._store.conditions import Condition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class ConditionFailed(Exception):
    """A conditional write lost: ``current`` is the item as it is now (``None`` if absent)."""

    def __init__(self, current: Item | None) -> None:
        self.current = current
        super().__init__("condition check failed")


class TransactionConflict(Exception):
    """A transaction was cancelled: ``reasons`` holds (code, current item) per action, in order."""

    def __init__(self, reasons: list[tuple[str, Item | None]]) -> None:
        self.reasons = reasons
        super().__init__(f"transaction cancelled: {[code for code, _ in reasons]}")


def to_dynamo(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(_plain(v)) for k, v in item.items() if v is not None}


def from_dynamo(item: Mapping[str, Any] | None) -> Item | None:
    if not item:
        return None
    return {k: _python(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(str(value))
    return value


def _python(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


class Table:
    """One DynamoDB table on the low-level client."""

    def __init__(self, client: DynamoDBClient, name: str) -> None:
        self.client = client
        self.name = name

    def key(self, pk: str, sk: str) -> dict[str, Any]:
        return to_dynamo({"pk": pk, "sk": sk})

    def update(
        self,
        pk: str,
        sk: str,
        set_values: Mapping[str, Any],
        condition: Condition | None = None,
        *,
        increments: Mapping[str, int] | None = None,
        remove: tuple[str, ...] = (),
        return_old: bool = False,
        increment_from: int = 0,
    ) -> Item | None:
        """``SET`` the given attributes (``increments`` grow from ``increment_from`` on an attribute
        the item does not have yet) under ``condition``.

        Returns the new item, or the old one when ``return_old``.
        """
        request = self.update_request(
            pk, sk, set_values, condition, increments=increments, remove=remove, increment_from=increment_from
        )
        try:
            response = self.client.update_item(
                **request,
                ReturnValues="ALL_OLD" if return_old else "ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            raise _condition_failed(error) from None
        return from_dynamo(response.get("Attributes"))

    def update_request(
        self,
        pk: str,
        sk: str,
        set_values: Mapping[str, Any],
        condition: Condition | None = None,
        *,
        increments: Mapping[str, int] | None = None,
        remove: tuple[str, ...] = (),
        increment_from: int = 0,
    ) -> dict[str, Any]:
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        sets = []
        for i, (attr, value) in enumerate(set_values.items()):
            if value is None:
                continue
            names[f"#s{i}"] = attr
            values[f":s{i}"] = value
            sets.append(f"#s{i} = :s{i}")
        for i, (attr, step) in enumerate((increments or {}).items()):
            names[f"#i{i}"] = attr
            values[f":i{i}"] = step
            values[":zero"] = increment_from
            sets.append(f"#i{i} = if_not_exists(#i{i}, :zero) + :i{i}")
        expression = "SET " + ", ".join(sets)
        if remove:
            for i, attr in enumerate(remove):
                names[f"#r{i}"] = attr
            expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(remove)))
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": self.key(pk, sk),
            "UpdateExpression": expression,
        }
        if condition is not None:
            names.update(condition.names)
            values.update(condition.values)
            request["ConditionExpression"] = condition.expression
        request["ExpressionAttributeNames"] = names
        if values:
            request["ExpressionAttributeValues"] = to_dynamo(values)
        return request

    def put_request(self, item: Mapping[str, Any], condition: Condition | None = None) -> dict[str, Any]:
        request: dict[str, Any] = {"TableName": self.name, "Item": to_dynamo(item)}
        if condition is not None:
            request["ConditionExpression"] = condition.expression
            request["ExpressionAttributeNames"] = dict(condition.names)
            if condition.values:
                request["ExpressionAttributeValues"] = to_dynamo(condition.values)
        return request

    def put(self, item: Mapping[str, Any], condition: Condition | None = None) -> None:
        try:
            self.client.put_item(
                **self.put_request(item, condition), ReturnValuesOnConditionCheckFailure="ALL_OLD"
            )
        except ClientError as error:
            raise _condition_failed(error) from None

    def get(self, pk: str, sk: str) -> Item | None:
        response = self.client.get_item(TableName=self.name, Key=self.key(pk, sk), ConsistentRead=True)
        return from_dynamo(response.get("Item"))

    def query(self, **query: Any) -> list[Item]:
        """Every page of the Query (the caller's arguments are not modified)."""
        request = dict(query)
        items: list[Item] = []
        while True:
            response = self.client.query(TableName=self.name, **request)
            items.extend(i for i in (from_dynamo(raw) for raw in response.get("Items", [])) if i)
            last = response.get("LastEvaluatedKey")
            if not last:
                return items
            request["ExclusiveStartKey"] = last

    def query_page(self, **query: Any) -> tuple[list[Item], bool]:
        """One page of the Query (``Limit`` bounds it) and whether more pages follow."""
        response = self.client.query(TableName=self.name, **query)
        items = [i for i in (from_dynamo(raw) for raw in response.get("Items", [])) if i]
        return items, bool(response.get("LastEvaluatedKey"))

    def transact(self, actions: list[dict[str, Any]]) -> None:
        """Write all ``actions`` (``{"Put": ...}`` / ``{"Update": ...}``) or none."""
        for action in actions:
            for body in action.values():
                body["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            self.client.transact_write_items(TransactItems=actions)  # type: ignore[arg-type]
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = error.response.get("CancellationReasons", [])
            raise TransactionConflict(
                [(r.get("Code", "None"), from_dynamo(r.get("Item"))) for r in reasons]
            ) from None


def _condition_failed(error: ClientError) -> Exception:
    if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
        return ConditionFailed(from_dynamo(error.response.get("Item")))  # type: ignore[arg-type]
    return error
