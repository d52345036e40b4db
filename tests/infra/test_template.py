"""Tests for the template loader and resolver, and the project's own assertions on ``template.yaml``.

cfn-lint misses some mistakes (an unknown runtime string, an SQS event property SAM drops
silently), so the contract the runtime relies on (keys, indexes, redrive, event source settings,
least-privilege policies) is asserted here against the real template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aetheris._store import schema
from aetheris._store.listing import SUMMARY_ATTRIBUTES
from aetheris._tenancy import TENANT_ATTRIBUTE
from aetheris_infra.template import (
    NO_VALUE,
    Template,
    TemplateError,
    UnresolvedReferenceError,
    load_template,
    references,
)
from tests.infra import iam

SHORT_TAGS_YAML = """
AWSTemplateFormatVersion: 2010-09-09
Parameters:
  Stage: {Type: String, Default: dev, AllowedValues: [dev, prod]}
  Size: {Type: Number, Default: 7}
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
  Both: !And [!Condition NotProd, !Or [!Equals [a, a], !Condition IsProd]]
Mappings:
  Sizes: {dev: {Memory: 256}, prod: {Memory: 1024}}
Resources:
  Thing:
    Type: AWS::SQS::Queue
    Properties:
      ARef: !Ref Stage
      DottedAtt: !GetAtt Other.Arn
      ListAtt: !GetAtt [Other, Arn]
      Sub: !Sub "${AWS::StackName}-${Stage}"
      SubList: !Sub ["${Name}-x", {Name: !Ref Stage}]
      Join: !Join [":", [a, !Ref Stage]]
      If: !If [IsProd, big, small]
      Select: !Select [1, !Split [",", "a,b,c"]]
      FindInMap: !FindInMap [Sizes, !Ref Stage, Memory]
      ImportValue: !ImportValue shared-vpc
      Base64: !Base64 hello
      AZs: !GetAZs ""
  Other:
    Type: AWS::SQS::Queue
"""


def _template(tmp_path: Path, text: str = SHORT_TAGS_YAML) -> Template:
    path = tmp_path / "template.yaml"
    path.write_text(text, encoding="utf-8")
    return load_template(path)


def _props(template: Template) -> dict[str, Any]:
    return dict(template.resources["Thing"].properties)


def test_load_template_short_tags_become_long_form(tmp_path: Path) -> None:
    template = _template(tmp_path)
    props = _props(template)
    conditions = template.document["Conditions"]

    assert props["ARef"] == {"Ref": "Stage"}
    assert props["DottedAtt"] == {"Fn::GetAtt": ["Other", "Arn"]}
    assert props["Sub"] == {"Fn::Sub": "${AWS::StackName}-${Stage}"}
    assert props["SubList"] == {"Fn::Sub": ["${Name}-x", {"Name": {"Ref": "Stage"}}]}
    assert props["Join"] == {"Fn::Join": [":", ["a", {"Ref": "Stage"}]]}
    assert props["If"] == {"Fn::If": ["IsProd", "big", "small"]}
    assert props["Select"] == {"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}
    assert props["FindInMap"] == {"Fn::FindInMap": ["Sizes", {"Ref": "Stage"}, "Memory"]}
    assert props["ImportValue"] == {"Fn::ImportValue": "shared-vpc"}
    assert props["Base64"] == {"Fn::Base64": "hello"}
    assert props["AZs"] == {"Fn::GetAZs": ""}
    assert conditions["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert conditions["NotProd"] == {"Fn::Not": [{"Condition": "IsProd"}]}
    assert conditions["Both"]["Fn::And"][1]["Fn::Or"][0] == {"Fn::Equals": ["a", "a"]}


def test_load_template_getatt_list_form_equals_dotted_form(tmp_path: Path) -> None:
    props = _props(_template(tmp_path))

    assert props["ListAtt"] == props["DottedAtt"]


def test_load_template_unquoted_date_stays_string(tmp_path: Path) -> None:
    assert _template(tmp_path).document["AWSTemplateFormatVersion"] == "2010-09-09"


def test_load_template_getatt_without_attribute_raises(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match=r"LogicalId\.Attribute"):
        _template(tmp_path, "Resources:\n  A:\n    Type: X\n    Properties: {B: !GetAtt Other}\n")


def test_load_template_document_without_resources_raises(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="no Resources"):
        _template(tmp_path, "Parameters: {}\n")


def test_resolve_sub_parameter_and_pseudo_parameters_substituted(tmp_path: Path) -> None:
    template = _template(tmp_path)
    value = {"Fn::Sub": "${Stage}/${AWS::Region}/${AWS::AccountId}/${AWS::StackName}/${!Literal}"}

    resolved = template.resolve(value, {}, region="eu-west-1", account_id="000000000000", stack_name="s")

    assert resolved == "dev/eu-west-1/000000000000/s/${Literal}"


def test_resolve_parameter_override_wins_over_default(tmp_path: Path) -> None:
    template = _template(tmp_path)

    resolved = template.resolve(_props(template)["SubList"], {}, parameters={"Stage": "prod"})

    assert resolved == "prod-x"


def test_resolve_number_parameter_ref_is_string(tmp_path: Path) -> None:
    assert _template(tmp_path).resolve({"Ref": "Size"}, {}) == "7"


def test_resolve_all_supported_intrinsics_evaluated(tmp_path: Path) -> None:
    template = _template(tmp_path)
    props = {k: v for k, v in _props(template).items() if k not in ("ImportValue", "AZs")}
    refs = {"Other": "https://queue/other", "Other.Arn": "arn:aws:sqs:us-east-1:1:other"}

    resolved = template.resolve(props, refs, stack_name="stk")

    assert resolved == {
        "ARef": "dev",
        "DottedAtt": "arn:aws:sqs:us-east-1:1:other",
        "ListAtt": "arn:aws:sqs:us-east-1:1:other",
        "Sub": "stk-dev",
        "SubList": "dev-x",
        "Join": "a:dev",
        "If": "small",
        "Select": "b",
        "FindInMap": 256,
        "Base64": "aGVsbG8=",
    }


def test_resolve_condition_follows_parameter_override(tmp_path: Path) -> None:
    template = _template(tmp_path)
    value = {"Fn::If": ["Both", "both", "neither"]}

    assert template.resolve(_props(template)["If"], {}, parameters={"Stage": "prod"}) == "big"
    assert template.resolve(value, {}) == "both"
    assert template.resolve(value, {}, parameters={"Stage": "prod"}) == "neither"


def test_resolve_getatt_in_sub_reads_dotted_ref(tmp_path: Path) -> None:
    template = _template(tmp_path)

    assert template.resolve({"Fn::Sub": "q=${Other.Arn}"}, {"Other.Arn": "arn:q"}) == "q=arn:q"


def test_resolve_unknown_ref_raises_unresolved(tmp_path: Path) -> None:
    template = _template(tmp_path)

    with pytest.raises(UnresolvedReferenceError, match="Other"):
        template.resolve(_props(template)["DottedAtt"], {})
    with pytest.raises(UnresolvedReferenceError, match="Missing"):
        template.resolve({"Fn::Sub": "${Missing}"}, {})


def test_resolve_import_value_raises_unresolved(tmp_path: Path) -> None:
    template = _template(tmp_path)

    with pytest.raises(UnresolvedReferenceError, match="ImportValue"):
        template.resolve(_props(template)["ImportValue"], {})


def test_resolve_ref_no_value_drops_entry(tmp_path: Path) -> None:
    template = _template(tmp_path)
    value = {"Keep": 1, "Drop": {"Ref": "AWS::NoValue"}, "List": [1, {"Ref": "AWS::NoValue"}]}

    assert template.resolve(value, {}) == {"Keep": 1, "List": [1]}
    assert template.resolve({"Ref": "AWS::NoValue"}, {}) is NO_VALUE


def test_parameter_values_unknown_override_raises(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="Stgae"):
        _template(tmp_path).parameter_values({"Stgae": "prod"})


def test_parameter_values_disallowed_value_raises(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="not one of"):
        _template(tmp_path).parameter_values({"Stage": "qa"})


def test_references_sub_and_getatt_named_without_pseudo_parameters(tmp_path: Path) -> None:
    assert references(_props(_template(tmp_path))) == {"Stage", "Other"}


# --- the repository's template.yaml -------------------------------------------------------------


# What the SQS event source mapping does with the function's role.
POLL_ACTIONS = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
# Bedrock only with a model id, on exactly that model (tests/infra/test_template_bedrock.py resolves it).
BEDROCK_MODEL = ("bedrock:InvokeModel", "arn:${AWS::Partition}:bedrock:Region::foundation-model/ModelId")
QUEUE_DEPTHS = {
    ("sqs:GetQueueAttributes", queue)
    for queue in ("StepQueue", "StepDeadLetterQueue", "SignalQueue", "SignalDeadLetterQueue")
}


def own_logs_and_traces(log_group: str) -> set[tuple[str, str]]:
    return {
        ("logs:CreateLogStream", f"{log_group}:log-stream:*"),
        ("logs:PutLogEvents", f"{log_group}:log-stream:*"),
        ("xray:PutTraceSegments", "*"),
        ("xray:PutTelemetryRecords", "*"),
    }


@pytest.fixture(scope="module")
def repo_template() -> Template:
    return load_template()


def test_repo_template_parameters_have_contract_defaults(repo_template: Template) -> None:
    defaults = {name: p.default for name, p in repo_template.parameters.items()}

    assert defaults == {
        "Stage": "dev",
        "LeaseSeconds": "60",
        "LogLevel": "INFO",
        "StepBatchSize": "10",
        "StepMaxConcurrency": "50",
        "MaxReceiveCount": "10",
        "RetentionDays": "30",
        "RetentionHorizonDays": "30",
        "ApiAuth": "AWS_IAM",
        "JwtIssuer": "",
        "JwtAudience": "",
        "CallbackBaseUrl": "",
        "ModelId": "",
        "BedrockRegion": "",
        "AlarmTopicArn": "",
    }


def test_repo_template_jobs_table_keys_indexes_and_ttl_match_contract(repo_template: Template) -> None:
    props = repo_template.resources["JobsTable"].properties
    attribute_types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    indexes = {i["IndexName"]: i for i in props["GlobalSecondaryIndexes"]}

    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert attribute_types == {
        "pk": "S",
        "sk": "S",
        "gsi1pk": "S",
        "gsi1sk": "S",
        "due_shard": "S",
        "due_at": "N",
    }
    assert [k["AttributeName"] for k in indexes["by-status"]["KeySchema"]] == ["gsi1pk", "gsi1sk"]
    # Only keys and what listings read and filter by: a status change never copies the result.
    projection = indexes["by-status"]["Projection"]
    assert projection["ProjectionType"] == "INCLUDE"
    assert set(projection["NonKeyAttributes"]) == {*SUMMARY_ATTRIBUTES, TENANT_ATTRIBUTE} - {
        schema.STATUS_INDEX_SK
    }
    assert [k["AttributeName"] for k in indexes["by-due"]["KeySchema"]] == ["due_shard", "due_at"]
    assert indexes["by-due"]["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}


def test_repo_template_inbox_table_keyed_by_job_and_signal(repo_template: Template) -> None:
    props = repo_template.resources["InboxTable"].properties

    assert [(k["AttributeName"], k["KeyType"]) for k in props["KeySchema"]] == [
        ("pk", "HASH"),
        ("sk", "RANGE"),
    ]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


@pytest.mark.parametrize(
    ("queue", "dlq"), [("StepQueue", "StepDeadLetterQueue"), ("SignalQueue", "SignalDeadLetterQueue")]
)
def test_repo_template_queue_redrives_to_its_dlq(repo_template: Template, queue: str, dlq: str) -> None:
    props = repo_template.resources[queue].properties
    dlq_props = repo_template.resources[dlq].properties

    assert props["VisibilityTimeout"] == 360
    assert props["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]},
        "maxReceiveCount": {"Ref": "MaxReceiveCount"},
    }
    assert dlq_props["MessageRetentionPeriod"] == 1209600
    assert "FifoQueue" not in props


def test_repo_template_globals_python312_arm64_with_layer(repo_template: Template) -> None:
    function_globals = repo_template.document["Globals"]["Function"]

    assert function_globals["Runtime"] == "python3.12"
    assert function_globals["Architectures"] == ["arm64"]
    assert function_globals["Tracing"] == "Active"
    assert function_globals["Layers"] == [{"Ref": "RuntimeLayer"}]
    assert repo_template.resources["RuntimeLayer"].properties["ContentUri"] == "layers/runtime/"
    assert repo_template.resources["RuntimeLayer"].metadata == {
        "BuildMethod": "python3.12",
        "BuildArchitecture": "arm64",
    }


def test_repo_template_worker_sqs_event_reports_partial_batch_failures(repo_template: Template) -> None:
    worker = repo_template.resources["WorkerFunction"]
    (event,) = worker.properties["Events"].values()
    # SAM silently drops unknown SQS event properties: only accept the ones it documents.
    sam_sqs_properties = {
        "Queue",
        "BatchSize",
        "Enabled",
        "FilterCriteria",
        "FunctionResponseTypes",
        "KmsKeyArn",
        "MaximumBatchingWindowInSeconds",
        "MetricsConfig",
        "ScalingConfig",
    }

    assert worker.properties["Handler"] == "worker.app.handler"
    assert worker.properties["CodeUri"] == "functions/"
    assert event["Type"] == "SQS"
    assert set(event["Properties"]) <= sam_sqs_properties
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["StepQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == {"Ref": "StepBatchSize"}
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": {"Ref": "StepMaxConcurrency"}}


def test_repo_template_worker_role_grants_what_it_uses_on_named_resources(repo_template: Template) -> None:
    role = iam.role_of(repo_template, "WorkerFunction")

    assert iam.grants(role) == {
        *{(f"dynamodb:{a}", "JobsTable") for a in ("GetItem", "PutItem", "UpdateItem", "Query")},
        *{(f"dynamodb:{a}", "InboxTable") for a in ("Query", "UpdateItem")},
        *{(f"sqs:{a}", "StepQueue") for a in ("SendMessage", *POLL_ACTIONS)},
        ("s3:GetObject", "PayloadBucket/*"),
        ("s3:PutObject", "PayloadBucket/*"),
        BEDROCK_MODEL,
        ("secretsmanager:GetSecretValue", "CallbackKeys"),  # signs callback tokens
        *own_logs_and_traces("WorkerLogGroup"),
    }
    assert "Policies" not in repo_template.resources["WorkerFunction"].properties


def test_function_environment_worker_merges_globals_unresolved(repo_template: Template) -> None:
    env = repo_template.function_environment("WorkerFunction")

    assert env == {
        "AETHERIS_JOBS_TABLE": {"Ref": "JobsTable"},
        "AETHERIS_INBOX_TABLE": {"Ref": "InboxTable"},
        "AETHERIS_STEP_QUEUE_URL": {"Ref": "StepQueue"},
        "AETHERIS_SIGNAL_QUEUE_URL": {"Ref": "SignalQueue"},
        "AETHERIS_LEASE_SECONDS": {"Ref": "LeaseSeconds"},
        "AETHERIS_RETENTION_DAYS": {"Ref": "RetentionDays"},
        "AETHERIS_RETENTION_HORIZON_DAYS": {"Ref": "RetentionHorizonDays"},
        "AETHERIS_PAYLOAD_BUCKET": {"Ref": "PayloadBucket"},
        "AETHERIS_BEDROCK_MODEL_ID": {"Ref": "ModelId"},
        "AETHERIS_BEDROCK_REGION": {
            "Fn::If": ["HasBedrockRegion", {"Ref": "BedrockRegion"}, {"Ref": "AWS::Region"}]
        },
        "AETHERIS_CALLBACK_SECRET": {"Ref": "CallbackKeys"},
        "AETHERIS_PUBLIC_URL": {"Ref": "CallbackBaseUrl"},
        "AETHERIS_APP": "agents.support:app",
        "POWERTOOLS_SERVICE_NAME": "aetheris",
        "POWERTOOLS_METRICS_NAMESPACE": "Aetheris",
        "POWERTOOLS_LOG_LEVEL": {"Ref": "LogLevel"},
    }


def test_function_environment_function_variables_override_globals(tmp_path: Path) -> None:
    template = _template(
        tmp_path,
        "Globals:\n  Function:\n    Environment:\n      Variables: {A: g, B: g}\n"
        "Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      Environment:\n        Variables: {B: own, C: own}\n",
    )

    assert template.function_environment("Fn") == {"A": "g", "B": "own", "C": "own"}


def test_function_environment_non_function_raises(repo_template: Template) -> None:
    with pytest.raises(TemplateError, match="not a function"):
        repo_template.function_environment("JobsTable")


def test_resources_of_type_lists_tables_and_queues(repo_template: Template) -> None:
    assert set(repo_template.resources_of_type("AWS::DynamoDB::Table")) == {"JobsTable", "InboxTable"}
    assert set(repo_template.resources_of_type("AWS::SQS::Queue")) == {
        "StepQueue",
        "StepDeadLetterQueue",
        "SignalQueue",
        "SignalDeadLetterQueue",
    }


def test_repo_template_outputs_resolve_with_created_names(repo_template: Template) -> None:
    refs = {lid: f"physical-{lid}" for lid in repo_template.resources}

    outputs = {name: repo_template.resolve(o["Value"], refs) for name, o in repo_template.outputs.items()}

    assert outputs["JobsTableName"] == "physical-JobsTable"
    assert outputs["StepDeadLetterQueueUrl"] == "physical-StepDeadLetterQueue"
    assert outputs["ApiUrl"] == "https://physical-Api.execute-api.us-east-1.amazonaws.com/dev"


# --- the HTTP API -------------------------------------------------------------------------------

ROUTE_SECURITY = {"Fn::If": ["UseIamAuth", [{"AWS_IAM": []}], {"Fn::If": ["UseJwtAuth", [{"JWT": []}], []]}]}
JWT_PARAMETERS = {
    "ApiAuth": "JWT",
    "JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool",
    "JwtAudience": "client-a,client-b",
}


# Every other request reaches the handler too, for its 404 and 405 answers (with Allow).
CATCH_ALL = ("ANY", "/{proxy+}")


def _handler_routes() -> set[tuple[str, str]]:
    from aetheris.handlers.api import _spec

    paths = json.loads(_spec())["paths"]
    routes = {(method.upper(), path) for path, operations in paths.items() for method in operations}
    # openapi.json: served, not in itself; the UI's static files: served, not part of the API.
    return routes | {("GET", "/openapi.json"), CATCH_ALL} | {("GET", path) for path in UI_PATHS}


def _method(key: str) -> str:
    return "ANY" if key == "x-amazon-apigateway-any-method" else key.upper()


def test_repo_template_api_events_and_definition_cover_every_handler_route(repo_template: Template) -> None:
    function = repo_template.resources["ApiFunction"]
    events = {
        (e["Properties"]["Method"].upper(), e["Properties"]["Path"])
        for e in function.properties["Events"].values()
    }
    body = repo_template.resources["Api"].properties["DefinitionBody"]
    declared = {(_method(m), path) for path, methods in body["paths"].items() for m in methods}

    assert {e["Type"] for e in function.properties["Events"].values()} == {"HttpApi"}
    assert {e["Properties"]["ApiId"]["Ref"] for e in function.properties["Events"].values()} == {"Api"}
    assert events == declared == _handler_routes()
    assert {
        ("POST", "/jobs/{job_id}/signals/{name}"),
        ("POST", "/jobs/{job_id}/cancel"),
        ("GET", "/jobs/{job_id}/trace"),
    } <= events


def _route_securities(template: Template, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """Each declared route's resolved OpenAPI ``security`` under ``parameters`` (default: the defaults)."""
    body = template.resources["Api"].properties["DefinitionBody"]
    return {
        f"{_method(method)} {path}": template.resolve(operation.get("security"), {}, parameters=parameters)
        for path, methods in body["paths"].items()
        for method, operation in methods.items()
        if path not in UI_PATHS + CALLBACK_PATHS  # always open (see below), checked on their own
    }


UI_PATHS = ("/ui", "/ui/{asset}")
# Answered with a scoped callback token as the only credential (aetheris/callbacks.py).
CALLBACK_PATHS = ("/callbacks/succeed", "/callbacks/fail")


def test_repo_template_api_every_route_requires_iam_auth_by_default(repo_template: Template) -> None:
    body = repo_template.resources["Api"].properties["DefinitionBody"]
    securities = _route_securities(repo_template)
    static = [body["paths"][path]["get"]["security"] for path in UI_PATHS]
    scheme = body["components"]["securitySchemes"]["AWS_IAM"]

    ui_routes = {("GET", path) for path in UI_PATHS}
    callback_routes = {("POST", path) for path in CALLBACK_PATHS}
    assert {
        tuple(route.split(" ")) for route in securities
    } == _handler_routes() - ui_routes - callback_routes
    assert set(map(str, securities.values())) == {str([{"AWS_IAM": []}])}
    assert static == [[], []]  # the UI's files hold no data; a browser cannot sign SigV4
    # The callback answers take no authorizer in any mode: their token is checked by the function.
    for parameters in ({}, JWT_PARAMETERS, {"ApiAuth": "NONE"}):
        callbacks = [
            repo_template.resolve(body["paths"][path]["post"]["security"], {}, parameters=parameters)
            for path in CALLBACK_PATHS
        ]
        assert callbacks == [[], []], parameters
    assert scheme["x-amazon-apigateway-authtype"] == "awsSigv4"
    assert "ApiIsOpen" not in _deployed_outputs(repo_template)


def test_repo_template_api_jwt_mode_puts_the_jwt_authorizer_on_every_route(repo_template: Template) -> None:
    body = repo_template.resources["Api"].properties["DefinitionBody"]
    securities = _route_securities(repo_template, JWT_PARAMETERS)
    schemes = repo_template.resolve(body["components"]["securitySchemes"], {}, parameters=JWT_PARAMETERS)
    authorizer = schemes["JWT"]["x-amazon-apigateway-authorizer"]

    assert set(map(str, securities.values())) == {str([{"JWT": []}])}
    assert authorizer["type"] == "jwt"
    assert authorizer["identitySource"] == "$request.header.Authorization"
    assert authorizer["jwtConfiguration"]["issuer"] == JWT_PARAMETERS["JwtIssuer"]
    assert "JWT" not in repo_template.resolve(body["components"]["securitySchemes"], {})


def test_repo_template_api_open_only_when_asked_by_name_and_an_output_says_so(
    repo_template: Template,
) -> None:
    securities = _route_securities(repo_template, {"ApiAuth": "NONE"})

    assert set(map(str, securities.values())) == {"[]"}
    assert "ApiIsOpen" in _deployed_outputs(repo_template, {"ApiAuth": "NONE"})
    assert "WARNING" in repo_template.outputs["ApiIsOpen"]["Description"]
    with pytest.raises(TemplateError, match="not one of"):
        repo_template.parameter_values({"ApiAuth": "OFF"})


def test_repo_template_jwt_mode_without_issuer_or_audience_is_refused_by_a_rule(
    repo_template: Template,
) -> None:
    (rule,) = repo_template.document["Rules"].values()
    asserted = [a["Assert"] for a in rule["Assertions"]]

    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "ApiAuth"}, "JWT"]}
    assert {"Fn::Not": [{"Fn::Equals": [{"Ref": "JwtIssuer"}, ""]}]} in asserted
    assert {"Fn::Not": [{"Fn::Contains": [{"Ref": "JwtAudience"}, ""]}]} in asserted


def test_samconfig_every_environment_deploys_with_iam_auth() -> None:
    import tomllib

    config = tomllib.loads((Path(__file__).resolve().parents[2] / "samconfig.toml").read_text())
    overrides = {
        env: sections["deploy"]["parameters"]["parameter_overrides"].split()
        for env, sections in config.items()
        if isinstance(sections, dict) and "deploy" in sections
    }
    auth = {env: dict(p.split("=", 1) for p in pairs).get("ApiAuth") for env, pairs in overrides.items()}

    assert auth == {"default": "AWS_IAM", "prod": "AWS_IAM"}


def _deployed_outputs(template: Template, parameters: dict[str, str] | None = None) -> set[str]:
    """The outputs a stack deployed with ``parameters`` has (those whose condition holds)."""
    return {
        name
        for name, output in template.outputs.items()
        if "Condition" not in output
        or template.resolve({"Fn::If": [output["Condition"], True, False]}, {}, parameters=parameters)
    }


QUEUE_ARNS = [
    {"Fn::GetAtt": [queue, "Arn"]}
    for queue in ("StepQueue", "StepDeadLetterQueue", "SignalQueue", "SignalDeadLetterQueue")
]
# GET /observability/*: depths of every queue, a peek (receive, never delete) at the dead letters.
OBSERVABILITY_QUEUES = {
    "Statement": [
        {
            "Sid": "QueueDepths",
            "Effect": "Allow",
            "Action": ["sqs:GetQueueAttributes"],
            "Resource": QUEUE_ARNS,
        },
        {
            "Sid": "PeekDeadLetters",
            "Effect": "Allow",
            "Action": ["sqs:ReceiveMessage"],
            "Resource": [QUEUE_ARNS[1], QUEUE_ARNS[3]],
        },
    ]
}


def test_repo_template_api_function_stage_and_policies(repo_template: Template) -> None:
    api = repo_template.resources["Api"]
    function = repo_template.resources["ApiFunction"]

    assert api.type == "AWS::Serverless::HttpApi"
    assert api.properties["StageName"] == {"Ref": "Stage"}
    assert (function.properties["Handler"], function.properties["CodeUri"]) == (
        "api.app.handler",
        "functions/",
    )
    assert function.properties["Timeout"] < 30  # API Gateway's integration timeout
    assert iam.grants(iam.role_of(repo_template, "ApiFunction")) == {
        *{(f"dynamodb:{a}", "JobsTable") for a in ("GetItem", "PutItem", "UpdateItem", "Query")},
        ("dynamodb:Query", "JobsTable/index/by-status"),
        ("dynamodb:Query", "JobsTable/index/by-due"),  # the stuck list
        ("dynamodb:GetItem", "InboxTable"),  # a retried signal to a finished job: was it received?
        ("dynamodb:PutItem", "InboxTable"),  # a signal is in the inbox before its 202
        ("sqs:SendMessage", "SignalQueue"),
        ("sqs:SendMessage", "StepQueue"),
        *QUEUE_DEPTHS,
        ("sqs:ReceiveMessage", "StepDeadLetterQueue"),  # peeked, never deleted
        ("sqs:ReceiveMessage", "SignalDeadLetterQueue"),
        ("s3:GetObject", "PayloadBucket/*"),
        ("s3:PutObject", "PayloadBucket/*"),
        ("secretsmanager:GetSecretValue", "CallbackKeys"),  # verifies callback tokens
        *own_logs_and_traces("ApiLogGroup"),
    }


def test_repo_template_signals_and_sweeper_roles_grant_what_they_use(repo_template: Template) -> None:
    signals = iam.grants(iam.role_of(repo_template, "SignalsFunction"))
    sweeper = iam.grants(iam.role_of(repo_template, "SweeperFunction"))

    assert signals == {
        ("dynamodb:PutItem", "InboxTable"),
        ("dynamodb:UpdateItem", "InboxTable"),
        ("dynamodb:GetItem", "JobsTable"),
        *{(f"sqs:{a}", "SignalQueue") for a in POLL_ACTIONS},
        ("sqs:SendMessage", "StepQueue"),
        *own_logs_and_traces("SignalsLogGroup"),
    }
    assert sweeper == {
        *{(f"dynamodb:{a}", "JobsTable") for a in ("GetItem", "Query", "UpdateItem")},
        ("dynamodb:Query", "JobsTable/index/by-due"),
        ("dynamodb:Query", "JobsTable/index/by-status"),
        ("dynamodb:Query", "InboxTable"),
        ("dynamodb:UpdateItem", "InboxTable"),
        ("sqs:SendMessage", "StepQueue"),
        *QUEUE_DEPTHS,
        *own_logs_and_traces("SweeperLogGroup"),
    }
