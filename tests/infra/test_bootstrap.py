"""Tests for ``aetheris_infra.bootstrap`` on in-process moto: created resources behave as the template says.

Each test gets a fresh ``mock_aws`` backend, so tables and queues are small and state never leaks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from aetheris_infra.bootstrap import BootstrapError, StackResources, bootstrap
from aetheris_infra.template import Template, load_template

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"


@dataclass(frozen=True)
class Clients:
    dynamodb: DynamoDBClient
    sqs: SQSClient


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template()


@pytest.fixture
def clients() -> Iterator[Clients]:
    with mock_aws():
        yield Clients(
            dynamodb=boto3.client("dynamodb", region_name=REGION),
            sqs=boto3.client("sqs", region_name=REGION),
        )


@pytest.fixture
def stack(clients: Clients, template: Template) -> StackResources:
    return bootstrap(clients.dynamodb, clients.sqs, template, stack_name="t1")


def _receive(sqs: SQSClient, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [m["Body"] for m in messages.get("Messages", [])]


def test_bootstrap_physical_names_prefixed_with_stack_name(stack: StackResources) -> None:
    assert stack.jobs_table == "t1-JobsTable"
    assert stack.inbox_table == "t1-InboxTable"
    assert stack.step_queue_url.endswith("/t1-StepQueue")
    assert stack.step_dlq_url.endswith("/t1-StepDeadLetterQueue")
    assert stack.signal_queue_url.endswith("/t1-SignalQueue")
    assert stack.signal_dlq_url.endswith("/t1-SignalDeadLetterQueue")
    assert stack.arns["StepQueue"] == f"arn:aws:sqs:{REGION}:123456789012:t1-StepQueue"
    assert stack.arns["JobsTable"] == f"arn:aws:dynamodb:{REGION}:123456789012:table/t1-JobsTable"


def test_bootstrap_jobs_table_has_template_keys_indexes_and_ttl(
    clients: Clients, stack: StackResources
) -> None:
    table = clients.dynamodb.describe_table(TableName=stack.jobs_table)["Table"]
    ttl = clients.dynamodb.describe_time_to_live(TableName=stack.jobs_table)["TimeToLiveDescription"]
    indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}

    assert table["TableStatus"] == "ACTIVE"
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    assert {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}["due_at"] == "N"
    assert set(indexes) == {"by-status", "by-due"}
    assert [(k["AttributeName"], k["KeyType"]) for k in indexes["by-status"]["KeySchema"]] == [
        ("gsi1pk", "HASH"),
        ("gsi1sk", "RANGE"),
    ]
    assert indexes["by-status"]["Projection"]["ProjectionType"] == "INCLUDE"
    assert [(k["AttributeName"], k["KeyType"]) for k in indexes["by-due"]["KeySchema"]] == [
        ("due_shard", "HASH"),
        ("due_at", "RANGE"),
    ]
    assert indexes["by-due"]["Projection"]["ProjectionType"] == "KEYS_ONLY"
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}


def test_bootstrap_inbox_table_has_template_keys_and_ttl(clients: Clients, stack: StackResources) -> None:
    table = clients.dynamodb.describe_table(TableName=stack.inbox_table)["Table"]
    ttl = clients.dynamodb.describe_time_to_live(TableName=stack.inbox_table)["TimeToLiveDescription"]

    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    assert table.get("GlobalSecondaryIndexes", []) == []
    assert ttl["AttributeName"] == "expires_at"
    assert ttl["TimeToLiveStatus"] == "ENABLED"


def test_bootstrap_by_due_index_is_sparse_and_queryable(clients: Clients, stack: StackResources) -> None:
    ddb = clients.dynamodb
    ddb.put_item(TableName=stack.jobs_table, Item={"pk": {"S": "j1"}, "sk": {"S": "job"}})
    ddb.put_item(
        TableName=stack.jobs_table,
        Item={"pk": {"S": "j2"}, "sk": {"S": "job"}, "due_shard": {"S": "0"}, "due_at": {"N": "100"}},
    )

    due = ddb.query(
        TableName=stack.jobs_table,
        IndexName="by-due",
        KeyConditionExpression="due_shard = :s AND due_at <= :now",
        ExpressionAttributeValues={":s": {"S": "0"}, ":now": {"N": "200"}},
    )["Items"]

    assert [item["pk"]["S"] for item in due] == ["j2"]


@pytest.mark.parametrize("queue", ["StepQueue", "SignalQueue"])
def test_bootstrap_queue_attributes_match_template(
    clients: Clients, stack: StackResources, queue: str
) -> None:
    attributes = clients.sqs.get_queue_attributes(QueueUrl=stack.physical[queue], AttributeNames=["All"])[
        "Attributes"
    ]
    dlq = queue.replace("Queue", "DeadLetterQueue")
    dlq_attributes = clients.sqs.get_queue_attributes(QueueUrl=stack.physical[dlq], AttributeNames=["All"])[
        "Attributes"
    ]

    assert attributes["VisibilityTimeout"] == "360"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": stack.arns[dlq],
        "maxReceiveCount": 10,
    }
    assert dlq_attributes["MessageRetentionPeriod"] == "1209600"


def test_bootstrap_step_message_received_max_receive_count_times_lands_in_dlq(
    clients: Clients, stack: StackResources
) -> None:
    max_receive_count = int(stack.parameters["MaxReceiveCount"])
    clients.sqs.send_message(QueueUrl=stack.step_queue_url, MessageBody='{"job_id": "j1"}')

    deliveries = [_receive(clients.sqs, stack.step_queue_url) for _ in range(max_receive_count + 1)]

    assert deliveries[:max_receive_count] == [['{"job_id": "j1"}']] * max_receive_count
    assert deliveries[max_receive_count] == []
    assert _receive(clients.sqs, stack.step_dlq_url) == ['{"job_id": "j1"}']


def test_bootstrap_max_receive_count_override_drives_signal_redrive(
    clients: Clients, template: Template
) -> None:
    stack = bootstrap(clients.dynamodb, clients.sqs, template, "t2", {"MaxReceiveCount": "2"})
    clients.sqs.send_message(QueueUrl=stack.signal_queue_url, MessageBody="sig")

    deliveries = [_receive(clients.sqs, stack.signal_queue_url) for _ in range(3)]

    assert deliveries == [["sig"], ["sig"], []]
    assert _receive(clients.sqs, stack.signal_dlq_url) == ["sig"]


def test_bootstrap_twice_reuses_resources_and_keeps_data(
    clients: Clients, template: Template, stack: StackResources
) -> None:
    clients.dynamodb.put_item(TableName=stack.jobs_table, Item={"pk": {"S": "j1"}, "sk": {"S": "job"}})
    clients.sqs.send_message(QueueUrl=stack.step_queue_url, MessageBody="tick")

    again = bootstrap(clients.dynamodb, clients.sqs, template, stack_name="t1")

    assert again == stack
    assert clients.dynamodb.scan(TableName=stack.jobs_table)["Count"] == 1
    assert _receive(clients.sqs, stack.step_queue_url) == ["tick"]
    assert len(clients.dynamodb.list_tables()["TableNames"]) == 2
    assert len(clients.sqs.list_queues()["QueueUrls"]) == 4


def test_bootstrap_rerun_with_new_parameter_updates_existing_queue(
    clients: Clients, template: Template, stack: StackResources
) -> None:
    bootstrap(clients.dynamodb, clients.sqs, template, "t1", {"MaxReceiveCount": "3"})

    attributes = clients.sqs.get_queue_attributes(
        QueueUrl=stack.step_queue_url, AttributeNames=["RedrivePolicy"]
    )

    assert json.loads(attributes["Attributes"]["RedrivePolicy"])["maxReceiveCount"] == 3


def test_bootstrap_existing_table_with_other_keys_raises(clients: Clients, template: Template) -> None:
    clients.dynamodb.create_table(
        TableName="t3-InboxTable",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    with pytest.raises(BootstrapError, match="t3-InboxTable"):
        bootstrap(clients.dynamodb, clients.sqs, template, stack_name="t3")


def test_function_environment_worker_resolves_aetheris_vars_to_created_resources(
    stack: StackResources, template: Template
) -> None:
    env = stack.function_environment(template, "WorkerFunction")

    assert env == {
        "AETHERIS_JOBS_TABLE": "t1-JobsTable",
        "AETHERIS_INBOX_TABLE": "t1-InboxTable",
        "AETHERIS_STEP_QUEUE_URL": stack.step_queue_url,
        "AETHERIS_SIGNAL_QUEUE_URL": stack.signal_queue_url,
        "AETHERIS_LEASE_SECONDS": "60",
        "AETHERIS_RETENTION_DAYS": "30",
        "AETHERIS_RETENTION_HORIZON_DAYS": "30",
        "AETHERIS_PAYLOAD_BUCKET": "t1-payloadbucket",
        "AETHERIS_BEDROCK_MODEL_ID": "",  # no ModelId: the agent's scripted model
        "AETHERIS_BEDROCK_REGION": "us-east-1",  # no BedrockRegion: the stack's own
        "AETHERIS_CALLBACK_SECRET": "t1-CallbackKeys",  # named, not created locally
        "AETHERIS_PUBLIC_URL": "",  # no CallbackBaseUrl: links are paths
        "AETHERIS_APP": "agents.support:app",
        "POWERTOOLS_SERVICE_NAME": "aetheris",
        "POWERTOOLS_METRICS_NAMESPACE": "Aetheris",
        "POWERTOOLS_LOG_LEVEL": "INFO",
    }


def test_function_environment_parameter_overrides_flow_into_env(clients: Clients, template: Template) -> None:
    stack = bootstrap(
        clients.dynamodb, clients.sqs, template, "t4", {"LeaseSeconds": "5", "LogLevel": "DEBUG"}
    )

    env = stack.function_environment(template, "WorkerFunction")

    assert (env["AETHERIS_LEASE_SECONDS"], env["POWERTOOLS_LOG_LEVEL"]) == ("5", "DEBUG")


def test_stack_resources_resolve_getatt_queue_name(stack: StackResources, template: Template) -> None:
    value = {"Fn::Sub": "${StepQueue.QueueName}@${AWS::Region}/${AWS::StackName}"}

    assert stack.resolve(template, value) == f"t1-StepQueue@{REGION}/t1"


def test_bootstrap_with_s3_creates_the_payload_bucket_once(clients: Clients, template: Template) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    stack = bootstrap(clients.dynamodb, clients.sqs, template, stack_name="t5", s3=s3)
    s3.put_object(Bucket=stack.payload_bucket, Key="j1/abc.json", Body=b"{}")

    again = bootstrap(clients.dynamodb, clients.sqs, template, stack_name="t5", s3=s3)

    assert again.payload_bucket == stack.payload_bucket == "t5-payloadbucket"
    assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["t5-payloadbucket"]
    assert s3.list_objects_v2(Bucket=stack.payload_bucket)["KeyCount"] == 1


def test_bootstrap_without_s3_names_the_bucket_and_creates_nothing(stack: StackResources) -> None:
    assert stack.payload_bucket == "t1-payloadbucket"
    assert boto3.client("s3", region_name=REGION).list_buckets()["Buckets"] == []
