"""The template's Bedrock wiring: a model id turns Bedrock on, for exactly that model, in one region.

The worker's policies and environment are resolved with ``Template.resolve`` (conditions included)
for each choice of the ``ModelId`` and ``BedrockRegion`` parameters.
"""

from __future__ import annotations

from typing import Any

import pytest

from aetheris_infra.template import NO_VALUE, Template, load_template

TEMPLATE = load_template()
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
# Every resource's Ref and the attributes policies use, as placeholders: only Bedrock's are asserted.
REFS = {
    f"{logical_id}{attribute}": f"{logical_id}{attribute}-value"
    for logical_id in TEMPLATE.resources
    for attribute in ("", ".Arn", ".QueueName", ".QueueUrl", ".StreamArn")
}


def _resolve(template: Template, value: Any, **parameters: str) -> Any:
    return template.resolve(value, REFS, parameters=parameters, region="eu-central-1")


def _policies(function: str) -> Any:
    """The inline policies of the function's own role (one role per function)."""
    role = TEMPLATE.resources[function].properties["Role"]["Fn::GetAtt"][0]
    return TEMPLATE.resources[role].properties["Policies"]


def _bedrock_statements(policies: list[Any]) -> list[dict[str, Any]]:
    return [
        statement
        for policy in policies
        for statement in policy["PolicyDocument"]["Statement"]
        if isinstance(statement, dict)
        and any(str(action).startswith("bedrock:") for action in statement["Action"])
    ]


def test_worker_with_model_id_may_invoke_exactly_that_model_in_the_stack_region() -> None:
    policies = _resolve(TEMPLATE, _policies("WorkerFunction"), ModelId=HAIKU)

    (statement,) = _bedrock_statements(policies)

    assert statement["Action"] == ["bedrock:InvokeModel"]
    assert statement["Resource"] == f"arn:aws:bedrock:eu-central-1::foundation-model/{HAIKU}"


def test_worker_with_bedrock_region_may_invoke_the_model_there() -> None:
    policies = _policies("WorkerFunction")
    resolved = _resolve(TEMPLATE, policies, ModelId=HAIKU, BedrockRegion="us-west-2")
    environment = _resolve(
        TEMPLATE, TEMPLATE.function_environment("WorkerFunction"), ModelId=HAIKU, BedrockRegion="us-west-2"
    )

    (statement,) = _bedrock_statements(resolved)

    assert statement["Resource"] == f"arn:aws:bedrock:us-west-2::foundation-model/{HAIKU}"
    assert environment["AETHERIS_BEDROCK_MODEL_ID"] == HAIKU
    assert environment["AETHERIS_BEDROCK_REGION"] == "us-west-2"


def test_worker_without_model_id_has_no_bedrock_permission_and_runs_scripted() -> None:
    policies = _resolve(TEMPLATE, _policies("WorkerFunction"))
    environment = _resolve(TEMPLATE, TEMPLATE.function_environment("WorkerFunction"))

    assert _bedrock_statements(policies) == []
    assert all(NO_VALUE not in policy["PolicyDocument"]["Statement"] for policy in policies)
    assert environment["AETHERIS_BEDROCK_MODEL_ID"] == ""  # the agent's scripted model
    assert environment["AETHERIS_BEDROCK_REGION"] == "eu-central-1"


@pytest.mark.parametrize("function", ["ApiFunction", "SignalsFunction", "SweeperFunction"])
def test_other_functions_never_get_bedrock(function: str) -> None:
    policies = _resolve(TEMPLATE, _policies(function), ModelId=HAIKU)

    assert _bedrock_statements(policies) == []
