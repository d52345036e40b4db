"""The API's OpenAPI document as served: the generated one, made exactly as strict as the hosted app.

Powertools generates the document from the routes' models, which know nothing of the app: to them
``job_type`` is any string and ``input`` any JSON. The served document says what the server checks:
``POST /jobs`` takes one of the app's job types, each with the JSON schema of its own input type
(pydantic's, from the job function's annotation), and ``input`` is required where the type does
not take ``null``. So a request that fits the document is never refused for its ``job_type`` or its
``input``, and a fuzzer (tests/functional/test_api_fuzz.py) can tell a bug from a bad request.

``check_input`` is the server's side of the same contract: the input is validated strictly, as its
JSON schema reads (no ``"1"`` or ``true`` for an integer), except that an integral number such as
``3.0`` is an integer, as JSON Schema counts it.

It also adds OpenAPI links from the job a ``POST /jobs`` answer names to every operation on
``/jobs/{job_id}...``: clients and stateful fuzzers can follow them instead of guessing ids.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from pydantic import ValidationError

from aetheris.app import App

_REF_TEMPLATE = "#/components/schemas/{model}"


def document(generated: dict[str, Any], app: App) -> dict[str, Any]:
    """``generated`` (not changed) with ``app``'s job types and the links between operations."""
    spec = copy.deepcopy(generated)
    _job_types(spec, app)
    _links(spec)
    return spec


def _job_types(spec: dict[str, Any], app: App) -> None:
    schemas: dict[str, Any] = spec.setdefault("components", {}).setdefault("schemas", {})
    request = schemas.get("StartJobRequest")
    if request is None or not app.job_types:
        return
    properties = request["properties"]
    variants = []
    for job_type in app.job_types:
        definition = app.get(job_type)
        input_schema = definition.input.json_schema(ref_template=_REF_TEMPLATE)
        for name, shared in input_schema.pop("$defs", {}).items():
            schemas.setdefault(name, shared)
        variants.append(
            {
                "type": "object",
                "title": f"Start {job_type}",
                "additionalProperties": False,
                "required": ["job_type", "input"] if _needs_input(app, job_type) else ["job_type"],
                "properties": {
                    "job_type": {**properties["job_type"], "const": job_type},
                    "input": {**input_schema, "description": properties["input"].get("description", "")},
                    "idempotency_key": properties["idempotency_key"],
                },
            }
        )
    schemas["StartJobRequest"] = {
        "title": "StartJobRequest",
        "description": request.get("description", ""),
        "oneOf": variants,
    }


def check_input(app: App, job_type: str, value: Any) -> None:
    """Raise pydantic's ``ValidationError`` unless ``value`` fits ``job_type``'s input schema."""
    app.get(job_type).input.validate_json(json.dumps(_integral_as_int(value)), strict=True)


def _integral_as_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_as_int(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_as_int(item) for key, item in value.items()}
    return value


def _needs_input(app: App, job_type: str) -> bool:
    try:
        app.get(job_type).input.validate_python(None)
    except ValidationError:
        return True
    return False


def _links(spec: dict[str, Any]) -> None:
    paths: dict[str, Any] = spec.get("paths", {})
    targets = {
        operation["operationId"]: path
        for path, operations in paths.items()
        if path.startswith("/jobs/{job_id}")
        for operation in operations.values()
        if "operationId" in operation
    }
    start = paths.get("/jobs", {}).get("post")
    if start is None:
        return
    for status in ("200", "201"):
        response = start.get("responses", {}).get(status)
        if response is None:
            continue
        response["links"] = {
            operation_id: {
                "operationId": operation_id,
                "parameters": {"job_id": "$response.body#/job_id"},
                "description": f"the started job, at {path}",
            }
            for operation_id, path in sorted(targets.items())
        }
