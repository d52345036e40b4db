"""Operations in ``template.yaml``: retention, the payload bucket, the dashboard and the alarms.

cfn-lint checks shapes (tests/infra/test_sam.py); these check what the project relies on: every
function gets the retention, the bucket is private, encrypted, TLS-only and expires with the jobs,
the functions' S3 access is object-level on that bucket only, an alarm watches each dead-letter
queue, and the dashboard plots metrics the handlers really emit (captured from their EMF lines).
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from aetheris import App, JobContext, NonRetryableError, hosting
from aetheris import _observability as obs
from aetheris._engine.worker import TickOutcome
from aetheris.config import Settings
from aetheris.testing import LocalRuntime
from aetheris_infra.http_bridge import http_api_event
from aetheris_infra.lambda_events import LocalLambdaContext
from aetheris_infra.template import NO_VALUE, load_template
from tests.infra import iam

TEMPLATE = load_template()
FUNCTIONS = sorted(TEMPLATE.resources_of_type("AWS::Serverless::Function"))
ALARMS = TEMPLATE.resources_of_type("AWS::CloudWatch::Alarm")
TOPIC = "arn:aws:sns:us-east-1:123456789012:oncall"


def props(logical_id: str) -> dict[str, Any]:
    return dict(TEMPLATE.resources[logical_id].properties)


# --- retention ----------------------------------------------------------------------------------


def test_retention_days_parameter_is_a_bounded_number_defaulting_to_30() -> None:
    parameter = TEMPLATE.document["Parameters"]["RetentionDays"]

    assert (parameter["Type"], parameter["Default"]) == ("Number", 30)
    assert parameter["MinValue"] >= 1


@pytest.mark.parametrize("function", FUNCTIONS)
def test_retention_days_reaches_every_function_as_the_setting_the_runtime_reads(function: str) -> None:
    env = TEMPLATE.function_environment(function)

    assert env["AETHERIS_RETENTION_DAYS"] == {"Ref": "RetentionDays"}
    assert Settings.model_fields["retention"].validation_alias == "AETHERIS_RETENTION_DAYS"


# --- payload bucket ----------------------------------------------------------------------------


def test_payload_bucket_is_encrypted_private_and_owner_enforced() -> None:
    bucket = props("PayloadBucket")
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]

    assert rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}


def test_payload_bucket_objects_expire_after_retention_days() -> None:
    rules = props("PayloadBucket")["LifecycleConfiguration"]["Rules"]
    enabled = [r for r in rules if r["Status"] == "Enabled"]

    assert [r["ExpirationInDays"] for r in enabled] == [{"Ref": "RetentionDays"}]
    assert TEMPLATE.resolve(enabled[0]["ExpirationInDays"], {}, parameters={"RetentionDays": "7"}) == "7"


def test_payload_bucket_policy_denies_plain_http_on_bucket_and_objects() -> None:
    policy = props("PayloadBucketPolicy")
    (statement,) = policy["PolicyDocument"]["Statement"]

    assert policy["Bucket"] == {"Ref": "PayloadBucket"}
    assert (statement["Effect"], statement["Principal"], statement["Action"]) == ("Deny", "*", "s3:*")
    assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [
        {"Fn::GetAtt": ["PayloadBucket", "Arn"]},
        {"Fn::Sub": "${PayloadBucket.Arn}/*"},
    ]


def test_payload_bucket_name_reaches_the_functions_that_move_payloads() -> None:
    wired = {f for f in FUNCTIONS if "AETHERIS_PAYLOAD_BUCKET" in TEMPLATE.function_environment(f)}

    assert wired == {"WorkerFunction", "ApiFunction"}
    for function in wired:
        assert TEMPLATE.function_environment(function)["AETHERIS_PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}
    assert Settings(_env_file=None, payload_bucket="b").payload_bucket == "b"  # type: ignore[call-arg]
    assert TEMPLATE.outputs["PayloadBucketName"]["Value"] == {"Ref": "PayloadBucket"}


def test_payload_limits_come_from_the_environment_under_their_documented_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AETHERIS_PAYLOAD_BUCKET", "b")
    monkeypatch.setenv("AETHERIS_OFFLOAD_THRESHOLD_BYTES", "4096")
    monkeypatch.setenv("AETHERIS_MAX_OFFLOADED_BYTES", "1048576")

    settings = Settings.from_env()

    assert (settings.payload_bucket, settings.offload_threshold_bytes) == ("b", 4096)
    assert (settings.max_offloaded_bytes, settings.max_payload_bytes) == (1048576, 256 * 1024)


def test_functions_that_move_payloads_may_get_and_put_objects_and_the_others_never_touch_s3() -> None:
    for function in FUNCTIONS:
        granted = iam.grants(iam.role_of(TEMPLATE, function))
        s3 = {(action, resource) for action, resource in granted if action.startswith("s3:")}
        moves = function in {"WorkerFunction", "ApiFunction"}
        expected = {("s3:GetObject", "PayloadBucket/*"), ("s3:PutObject", "PayloadBucket/*")}
        assert s3 == (expected if moves else set()), function


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_role_grants_no_wildcard_action_or_resource_beyond_the_unavoidable(function: str) -> None:
    role = iam.role_of(TEMPLATE, function)
    log_group = props(function)["LoggingConfig"]["LogGroup"]["Ref"]

    assert iam.wildcards_beyond_the_exceptions(role, log_group) == []
    assert "ManagedPolicyArns" not in role  # AWS's managed Lambda policies grant logs and SQS on "*"
    assert "Policies" not in props(function)  # SAM's policy templates grant Scan, index/* and SendMessage*
    assert TEMPLATE.resources[log_group].type == "AWS::Logs::LogGroup"


@pytest.mark.parametrize("function", FUNCTIONS)
def test_function_roles_are_one_per_function_and_assumable_by_lambda_only(function: str) -> None:
    role = iam.role_of(TEMPLATE, function)
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    roles = {props(f)["Role"]["Fn::GetAtt"][0] for f in FUNCTIONS}

    assert len(roles) == len(FUNCTIONS)
    assert trust == {
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    assert all(s["Effect"] == "Allow" for s in iam.statements(role))


# --- alarms -----------------------------------------------------------------------------------


def alarm_on(metric: str, dimension_value: Any) -> list[str]:
    return [
        lid
        for lid, alarm in ALARMS.items()
        if alarm.properties.get("MetricName") == metric
        and {"Name": alarm.properties["Dimensions"][0]["Name"], "Value": dimension_value}
        in alarm.properties["Dimensions"]
    ]


@pytest.mark.parametrize("dlq", ["StepDeadLetterQueue", "SignalDeadLetterQueue"])
def test_alarm_fires_on_the_first_message_in_each_dead_letter_queue(dlq: str) -> None:
    (alarm,) = alarm_on("ApproximateNumberOfMessagesVisible", {"Fn::GetAtt": [dlq, "QueueName"]})
    spec = props(alarm)

    assert (spec["Namespace"], spec["ComparisonOperator"], spec["Threshold"]) == (
        "AWS/SQS",
        "GreaterThanThreshold",
        0,
    )
    assert spec["TreatMissingData"] == "notBreaching"


def test_alarms_on_step_queue_age_worker_errors_and_table_throttles() -> None:
    (age,) = alarm_on("ApproximateAgeOfOldestMessage", {"Fn::GetAtt": ["StepQueue", "QueueName"]})
    (errors,) = alarm_on("Errors", {"Ref": "WorkerFunction"})
    throttle = [lid for lid, a in ALARMS.items() if "Metrics" in a.properties]
    (throttle_alarm,) = throttle
    watched = {
        (m["MetricStat"]["Metric"]["MetricName"], m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"])
        for m in props(throttle_alarm)["Metrics"]
        if "MetricStat" in m
    }
    (expression,) = [m["Expression"] for m in props(throttle_alarm)["Metrics"] if m.get("ReturnData")]

    assert props(age)["Threshold"] > 0 and props(errors)["Threshold"] == 0
    assert watched == {
        (kind, table)
        for kind in ("ReadThrottleEvents", "WriteThrottleEvents")
        for table in ("JobsTable", "InboxTable")
    }
    ids = {m["Id"] for m in props(throttle_alarm)["Metrics"] if "MetricStat" in m}
    assert set(re.findall(r"[a-z]+", expression)) == ids


@pytest.mark.parametrize("alarm", sorted(ALARMS))
def test_alarm_notifies_the_topic_only_when_one_is_given(alarm: str) -> None:
    spec = props(alarm)

    for key in ("AlarmActions", "OKActions"):
        assert TEMPLATE.resolve(spec[key], {}) is NO_VALUE
        assert TEMPLATE.resolve(spec[key], {}, parameters={"AlarmTopicArn": TOPIC}) == [TOPIC]


def test_alarm_topic_parameter_accepts_empty_or_an_sns_arn_only() -> None:
    pattern = TEMPLATE.document["Parameters"]["AlarmTopicArn"]["AllowedPattern"]

    assert re.fullmatch(pattern, "") and re.fullmatch(pattern, TOPIC)
    assert not re.fullmatch(pattern, "arn:aws:sqs:us-east-1:123456789012:q")


# --- dashboard --------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    """The dashboard body as CloudFormation would render it (every ${...} substituted)."""
    refs = {lid: f"physical-{lid}" for lid in TEMPLATE.resources}
    refs |= {f"{lid}.QueueName": f"queue-{lid}" for lid in TEMPLATE.resources_of_type("AWS::SQS::Queue")}
    body = TEMPLATE.resolve(props("Dashboard")["DashboardBody"], refs, stack_name="stk")
    assert "${" not in body
    parsed: dict[str, Any] = json.loads(body)
    return parsed


# A broken-down metric is plotted with a SEARCH over its dimension: (name, "service", service).
SEARCH = re.compile(r"SEARCH\('\{(\w+),[^}]*\} service=\"(\w+)\" MetricName=\"(\w+)\"")


def plotted(namespace: str) -> set[tuple[str, ...]]:
    found = set()
    for widget in dashboard()["widgets"]:
        for metric in widget["properties"]["metrics"]:
            if metric[0] == namespace:
                found.add(tuple(str(part) for part in metric if not isinstance(part, dict))[1:])
            elif isinstance(metric[0], dict) and "expression" in metric[0]:
                search = SEARCH.search(metric[0]["expression"])
                assert search is not None, metric  # only SEARCH expressions are used
                if search.group(1) == namespace:
                    found.add((search.group(3), "service", search.group(2)))
    return found


def expected_series(metric: obs.Metric) -> tuple[str, ...]:
    """How the dashboard names ``metric``: with its service dimension, or bare (a gauge)."""
    service = obs.SERVICES[metric]
    return (metric.value,) if service is None else (metric.value, "service", service)


def emitted_metrics(out: str) -> set[tuple[str, ...]]:
    """(metric, "service", service) for every metric in the EMF lines printed by the handlers
    ((metric,) for one without dimensions)."""
    found = set()
    for line in out.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "Aetheris"
            for metric in directive["Metrics"]:
                # A gauge without dimensions (the sweeper's StuckJobs, backlogs) is its name alone.
                dimensions = ("service", document["service"]) if "service" in document else ()
                found.add((metric["Name"], *dimensions))
    return found


def ops_app() -> App:
    app = App("ops")

    @app.job("approve")
    def approve(ctx: JobContext, fail: bool) -> str:
        ctx.wait_for_signal("go")
        if fail:
            raise NonRetryableError("told to fail")
        return "ok"

    return app


def test_dashboard_body_is_json_and_plots_only_metrics_the_handlers_emit(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from api.app import handler as api_handler

    with LocalRuntime(ops_app()) as local:
        hosting.use(local.runtimes[0])
        try:
            request = json.dumps({"job_type": "approve", "input": False}).encode()
            answer = api_handler(
                http_api_event("POST", "/jobs", [("content-type", "application/json")], request),
                LocalLambdaContext(),
            )
        finally:
            hosting.use(None)
        ok = json.loads(answer["body"])["job_id"]
        failing, cancelled = local.start("approve", True), local.start("approve", False)
        local.run_until_idle()
        local.signal(ok, "go")
        local.signal(failing, "go")
        local.cancel(cancelled)
        for job_id in (ok, failing, cancelled):
            local.wait(job_id)
        local.sweep()
    emitted = emitted_metrics(capsys.readouterr().out)
    # The worker emits Tick_<outcome> for every outcome; the rare ones are not provoked here.
    emitted |= {(f"Tick_{outcome.value}", "service", "worker") for outcome in TickOutcome}
    # Engine and sweeper metrics are checked by tests/infra/test_observability_ops.py.
    emitted |= {expected_series(m) for m in obs.FROM_ENGINE | obs.FROM_SWEEPER}
    # Lease conflicts and stale fences are not provoked here (see test_worker_handler_batches.py).
    emitted |= {expected_series(m) for m in (obs.Metric.LEASE_CONFLICTS, obs.Metric.STALE_FENCE_REJECTIONS)}

    assert {
        ("JobsStarted", "service", "api"),
        ("Tick_job_completed", "service", "worker"),
        ("Tick_job_failed", "service", "worker"),
        ("Tick_job_cancelled", "service", "worker"),
    } <= emitted
    assert plotted("Aetheris") <= emitted
    assert len(plotted("Aetheris")) >= 8


def test_dashboard_plots_queues_dead_letters_functions_and_tables() -> None:
    sqs = plotted("AWS/SQS")
    lambdas = plotted("AWS/Lambda")
    tables = plotted("AWS/DynamoDB")

    for queue in ("StepQueue", "SignalQueue"):
        assert ("ApproximateNumberOfMessagesVisible", "QueueName", f"queue-{queue}") in sqs
        assert ("ApproximateAgeOfOldestMessage", "QueueName", f"queue-{queue}") in sqs
    for dlq in ("StepDeadLetterQueue", "SignalDeadLetterQueue"):
        assert ("ApproximateNumberOfMessagesVisible", "QueueName", f"queue-{dlq}") in sqs
    assert {
        ("Errors", "FunctionName", "physical-WorkerFunction"),
        ("Throttles", "FunctionName", "physical-WorkerFunction"),
    } <= lambdas
    assert {name for name, _, _ in tables} == {"ReadThrottleEvents", "WriteThrottleEvents"}
    assert {table for _, _, table in tables} == {"physical-JobsTable", "physical-InboxTable"}
    assert TEMPLATE.outputs["DashboardName"]["Value"] == {"Ref": "Dashboard"}
