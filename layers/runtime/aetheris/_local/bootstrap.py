"""Create the template's tables and queues in moto, a moto server or LocalStack.

The template is by default the resource definitions this package ships (``resources.json``, kept
equal to the repository's ``template.yaml`` by a test), so a plain ``pip install`` can bootstrap.
``bootstrap`` reads every ``AWS::DynamoDB::Table`` and ``AWS::SQS::Queue`` of the template and
creates it with the template's own properties (keys, indexes, billing mode, streams and TTL for
tables; timeouts, retention, delays and the redrive policy for queues), in dependency order so a
dead-letter queue exists before the queue that redrives to it. Physical names are
``{stack_name}-{LogicalId}`` unless the template names the resource. Encryption, point-in-time
recovery and tags are deploy-time concerns and are not applied locally. It is idempotent: an
existing table is reused (after checking its keys and indexes still match the template) and an
existing queue is reused with its attributes brought in line. The caller passes the boto3 clients,
so it decides the endpoint. The returned ``StackResources`` resolves a function's environment
against what was created, exactly as CloudFormation would resolve it on deploy.

Every ``AWS::S3::Bucket`` (the payload bucket big values are offloaded to) is named
``{stack_name}-{logicalid}`` and, when an S3 client is passed, created (or reused). Encryption,
public-access block and the lifecycle rule are deploy-time concerns and are not applied locally.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from graphlib import CycleError, TopologicalSorter
from typing import TYPE_CHECKING, Any, Final

from aetheris._local.template import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_STACK_NAME,
    Template,
    TemplateError,
    load_resources,
    references,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

__all__ = ["BootstrapError", "StackResources", "bootstrap"]

TABLE_TYPE: Final = "AWS::DynamoDB::Table"
QUEUE_TYPE: Final = "AWS::SQS::Queue"
BUCKET_TYPE: Final = "AWS::S3::Bucket"
SECRET_TYPE: Final = "AWS::SecretsManager::Secret"

# CloudFormation queue properties that are SQS attributes of the same name.
_QUEUE_ATTRIBUTES: Final = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)
_QUEUE_JSON_ATTRIBUTES: Final = ("RedrivePolicy", "RedriveAllowPolicy")
_INDEX_KEYS: Final = ("IndexName", "KeySchema", "Projection")


class BootstrapError(Exception):
    """The local resources cannot be made to match the template."""


@dataclass(frozen=True)
class StackResources:
    """What ``bootstrap`` created: physical names/URLs, ARNs and the values used to resolve them."""

    stack_name: str
    region: str
    account_id: str
    parameters: dict[str, str]
    physical: dict[str, str]  # logical id -> table name or queue URL (what Ref returns)
    arns: dict[str, str]  # logical id -> ARN
    attributes: dict[str, str]  # "LogicalId.Attribute" -> value (what Fn::GetAtt returns)

    def refs(self) -> dict[str, str]:
        """The name table for ``Template.resolve``: ``Ref`` and ``Fn::GetAtt`` values of every resource."""
        return {**self.physical, **self.attributes}

    def resolve(self, template: Template, value: Any) -> Any:
        """Resolve ``value`` against the created resources, this stack's parameters and pseudo parameters."""
        return template.resolve(
            value,
            self.refs(),
            parameters=self.parameters,
            region=self.region,
            account_id=self.account_id,
            stack_name=self.stack_name,
        )

    def function_environment(self, template: Template, logical_id: str) -> dict[str, str]:
        """The function's environment variables (Globals merged), every intrinsic resolved to a string."""
        resolved = self.resolve(template, template.function_environment(logical_id))
        return {name: _as_attribute(value) for name, value in resolved.items()}

    @property
    def jobs_table(self) -> str:
        return self.physical["JobsTable"]

    @property
    def inbox_table(self) -> str:
        return self.physical["InboxTable"]

    @property
    def step_queue_url(self) -> str:
        return self.physical["StepQueue"]

    @property
    def step_dlq_url(self) -> str:
        return self.physical["StepDeadLetterQueue"]

    @property
    def signal_queue_url(self) -> str:
        return self.physical["SignalQueue"]

    @property
    def signal_dlq_url(self) -> str:
        return self.physical["SignalDeadLetterQueue"]

    @property
    def payload_bucket(self) -> str:
        return self.physical["PayloadBucket"]


def bootstrap(
    dynamodb: DynamoDBClient,
    sqs: SQSClient,
    template: Template | None = None,
    stack_name: str = DEFAULT_STACK_NAME,
    parameters: Mapping[str, str] | None = None,
    *,
    account_id: str = DEFAULT_ACCOUNT_ID,
    s3: S3Client | None = None,
) -> StackResources:
    """Create (or reuse) every table and queue of ``template`` — and its buckets, given ``s3`` —
    and return where they are.

    ``account_id`` is only the value of ``AWS::AccountId`` while resolving (moto's default; pass
    ``"000000000000"`` for LocalStack).
    """
    template = template or load_resources()
    stack = StackResources(
        stack_name=stack_name,
        region=sqs.meta.region_name,
        account_id=account_id,
        parameters=template.parameter_values(parameters),
        physical={},
        arns={},
        attributes={},
    )
    managed = {**template.resources_of_type(TABLE_TYPE), **template.resources_of_type(QUEUE_TYPE)}
    graph = {
        lid: (references(res.properties) | set(res.depends_on)) & managed.keys()
        for lid, res in managed.items()
    }
    try:
        order = list(TopologicalSorter(graph).static_order())
    except CycleError as exc:
        raise BootstrapError(f"circular references between resources: {exc.args[1]}") from exc
    for logical_id in order:
        resource = managed[logical_id]
        properties: Mapping[str, Any] = stack.resolve(template, resource.properties)
        if resource.type == TABLE_TYPE:
            _ensure_table(dynamodb, stack, logical_id, properties)
        else:
            _ensure_queue(sqs, stack, logical_id, properties)
    for logical_id in template.resources_of_type(BUCKET_TYPE):
        # Bucket names are lower case; CloudFormation would add a random suffix, locally none is needed.
        name = f"{stack.stack_name}-{logical_id}".lower()
        stack.physical[logical_id] = name
        stack.arns[logical_id] = f"arn:aws:s3:::{name}"
        stack.attributes.update(
            {f"{logical_id}.Arn": stack.arns[logical_id], f"{logical_id}.DomainName": name}
        )
        if s3 is not None:
            _ensure_bucket(s3, name)
    for logical_id in template.resources_of_type(SECRET_TYPE):
        # Named only (what a function's environment refers to); not created: locally the callback
        # keyring comes from AETHERIS_CALLBACK_KEYS or a per-process key (aetheris/callbacks.py).
        stack.physical[logical_id] = f"{stack.stack_name}-{logical_id}"
    return stack


def _ensure_bucket(s3: S3Client, name: str) -> None:
    region = s3.meta.region_name
    with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
        if region == "us-east-1":  # the one region that takes no location constraint
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})  # type: ignore[typeddict-item]


def _ensure_table(
    dynamodb: DynamoDBClient, stack: StackResources, logical_id: str, props: Mapping[str, Any]
) -> None:
    name = str(props.get("TableName") or f"{stack.stack_name}-{logical_id}")
    request = _table_request(name, props)
    try:
        existing = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(**request)
    else:
        _check_table_matches(name, existing, request)
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    table = dynamodb.describe_table(TableName=name)["Table"]

    ttl = props.get("TimeToLiveSpecification")
    if ttl and _as_attribute(ttl.get("Enabled", False)) == "true":
        _enable_ttl(dynamodb, name, str(ttl["AttributeName"]))

    stack.physical[logical_id] = name
    stack.arns[logical_id] = table["TableArn"]
    stack.attributes[f"{logical_id}.Arn"] = table["TableArn"]
    if "LatestStreamArn" in table:
        stack.attributes[f"{logical_id}.StreamArn"] = table["LatestStreamArn"]


def _enable_ttl(dynamodb: DynamoDBClient, name: str, attribute: str) -> None:
    current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    enabled = current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
    if not enabled or current.get("AttributeName") != attribute:  # updating an enabled TTL is an error
        dynamodb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"AttributeName": attribute, "Enabled": True}
        )


def _table_request(name: str, props: Mapping[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": props["KeySchema"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "BillingMode": props.get("BillingMode", "PROVISIONED"),
    }
    if "ProvisionedThroughput" in props:
        request["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
    for section in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if props.get(section):
            request[section] = [_index(index) for index in props[section]]
    stream = props.get("StreamSpecification")
    if stream:
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
    return request


def _index(index: Mapping[str, Any]) -> dict[str, Any]:
    result = {key: index[key] for key in _INDEX_KEYS if key in index}
    if "ProvisionedThroughput" in index:
        result["ProvisionedThroughput"] = _throughput(index["ProvisionedThroughput"])
    return result


def _throughput(spec: Mapping[str, Any]) -> dict[str, int]:
    return {key: int(spec[key]) for key in ("ReadCapacityUnits", "WriteCapacityUnits")}


def _check_table_matches(name: str, existing: Mapping[str, Any], request: Mapping[str, Any]) -> None:
    def shape(description: Mapping[str, Any]) -> tuple[object, ...]:
        return (
            sorted((k["AttributeName"], k["KeyType"]) for k in description.get("KeySchema", [])),
            sorted(i["IndexName"] for i in description.get("GlobalSecondaryIndexes", [])),
            sorted(i["IndexName"] for i in description.get("LocalSecondaryIndexes", [])),
        )

    if shape(existing) != shape(request):
        raise BootstrapError(
            f"table {name} exists with keys/indexes {shape(existing)}, the template wants {shape(request)}; "
            "delete it (or reset the local backend) and bootstrap again"
        )


def _ensure_queue(sqs: SQSClient, stack: StackResources, logical_id: str, props: Mapping[str, Any]) -> None:
    attributes = _queue_attributes(props)
    fifo = attributes.get("FifoQueue") == "true"
    name = str(props.get("QueueName") or f"{stack.stack_name}-{logical_id}{'.fifo' if fifo else ''}")
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    else:
        mutable = {key: value for key, value in attributes.items() if key != "FifoQueue"}
        if mutable:
            sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)  # type: ignore[arg-type]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.physical[logical_id] = url
    stack.arns[logical_id] = arn
    stack.attributes.update({f"{logical_id}.Arn": arn, f"{logical_id}.QueueUrl": url})
    stack.attributes[f"{logical_id}.QueueName"] = name


def _queue_attributes(props: Mapping[str, Any]) -> dict[str, str]:
    attributes = {key: _as_attribute(props[key]) for key in _QUEUE_ATTRIBUTES if key in props}
    for key in _QUEUE_JSON_ATTRIBUTES:
        if key in props:
            policy = props[key] if isinstance(props[key], dict) else json.loads(str(props[key]))
            if "maxReceiveCount" in policy:
                policy = {**policy, "maxReceiveCount": int(policy["maxReceiveCount"])}
            attributes[key] = json.dumps(policy, sort_keys=True)
    return attributes


def _as_attribute(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise TemplateError(f"expected a scalar, got {value!r}")
    return str(value)
