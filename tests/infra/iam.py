"""Reading the functions' IAM grants out of a template: statements, and (action, resource) pairs.

A resource is named by the logical id it belongs to: ``JobsTable``, ``JobsTable/index/by-due``,
``PayloadBucket/*`` (its objects), ``WorkerLogGroup:log-stream:*`` (its streams), or ``*``.
"""

from __future__ import annotations

import re
from typing import Any

from aetheris_infra.template import Template

LOGS_ARN = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
XRAY_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})


def role_of(template: Template, function: str) -> dict[str, Any]:
    role = template.resources[function].properties["Role"]
    assert set(role) == {"Fn::GetAtt"} and role["Fn::GetAtt"][1] == "Arn", role
    resource = template.resources[role["Fn::GetAtt"][0]]
    assert resource.type == "AWS::IAM::Role"
    return dict(resource.properties)


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """The role's statements; a conditional one (``Fn::If``) as it is when its condition holds."""
    found = []
    for policy in role.get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            if set(statement) == {"Fn::If"}:
                statement = statement["Fn::If"][1]
            if statement != {"Ref": "AWS::NoValue"}:
                found.append(statement)
    return found


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_name(resource: Any) -> str:
    """``resource`` (a string or an intrinsic) as a logical-id name."""
    if isinstance(resource, str):
        return resource
    if set(resource) == {"Ref"}:  # e.g. a secret, whose Ref is its ARN
        return str(resource["Ref"])
    if set(resource) == {"Fn::GetAtt"} and resource["Fn::GetAtt"][1] == "Arn":
        return str(resource["Fn::GetAtt"][0])
    if set(resource) == {"Fn::Sub"}:
        sub = resource["Fn::Sub"]
        text = (sub if isinstance(sub, str) else str(sub[0])).removeprefix(LOGS_ARN)
        return re.sub(r"\$\{([A-Za-z0-9]+)(?:\.Arn)?\}", r"\1", text)
    raise AssertionError(f"a resource this reader does not know: {resource!r}")


def grants(role: dict[str, Any]) -> set[tuple[str, str]]:
    """Every (action, resource) an Allow statement of ``role`` grants."""
    return {
        (action, resource_name(resource))
        for statement in statements(role)
        if statement["Effect"] == "Allow"
        for action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    }


def wildcards_beyond_the_exceptions(role: dict[str, Any], log_group: str) -> list[str]:
    """Each wildcard in ``role`` that is not one of the three that cannot be avoided: object keys of
    the payload bucket (one per job and value), streams of the function's own log group (one per
    execution environment), and X-Ray's two write actions (which take no resource but ``*``)."""
    allowed_resources = {"PayloadBucket/*", f"{log_group}:log-stream:*"}
    found = []
    for statement in statements(role):
        actions = as_list(statement["Action"])
        found += [f"action {a}" for a in actions if "*" in a]
        for resource in as_list(statement["Resource"]):
            name = resource_name(resource)
            if name == "*" and set(actions) <= XRAY_ACTIONS:
                continue
            if "*" in name and name not in allowed_resources:
                found.append(f"resource {name} for {actions}")
    return found
