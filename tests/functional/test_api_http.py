"""HTTP-level strictness of the API, over real HTTP: methods, media types, body shapes, parameter
patterns and cursors, and a served document exactly as strict as the server.

The rule each test pins: a request that fits ``/openapi.json`` is never refused as malformed, and
one that does not gets a 4xx with ``{"error": {"code", "message"}}`` — never a 5xx, and never a
body silently read as something it is not. (``test_api_fuzz.py`` checks the same by fuzzing.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from aetheris.events import JobStatus
from tests.functional.jobs import Calls, build_app
from tests.functional.test_api import Api, error_code, running_api


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with running_api(build_app(Calls())) as running:
        yield running


def job_count(api: Api) -> int:
    status, _, page = api.call("GET", "/jobs?limit=100")
    assert status == 200, page
    return len(page["jobs"])


# -- methods --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("DELETE", "/jobs", "GET, POST"),
        ("PUT", "/jobs/some-job", "GET"),
        ("GET", "/jobs/some-job/cancel", "POST"),
        ("TRACE", "/jobs/some-job/events", "GET"),
        ("QUERY", "/jobs", "GET, POST"),
        ("PATCH", "/jobs/some-job/signals/approval", "POST"),
    ],
)
def test_api_method_not_served_at_a_served_path_is_405_with_allow(
    api: Api, method: str, path: str, allow: str
) -> None:
    status, headers, body = api.call(method, path)

    assert (status, error_code(body)) == (405, "method_not_allowed")
    assert headers["Allow"] == allow
    assert method in body["error"]["message"] and allow in body["error"]["message"]


def test_api_path_served_for_no_method_is_404_not_found(api: Api) -> None:
    status, headers, body = api.call("DELETE", "/nowhere/at/all")

    assert (status, error_code(body)) == (404, "not_found")
    assert "Allow" not in headers


# -- media types ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["Application/JSON", "APPLICATION/json; Charset=UTF-8", "application/json;charset=utf8"]
)
def test_api_json_media_type_in_any_capitalisation_is_read_as_json(api: Api, content_type: str) -> None:
    status, _, body = api.call(
        "POST", "/jobs", {"job_type": "five_steps", "input": 1}, content_type=content_type
    )

    assert status == 201, body


@pytest.mark.parametrize(
    ("content_type", "raw"),
    [
        ("application/x-www-form-urlencoded", b"job_type=five_steps&input=1"),
        ("Application/X-WWW-Form-Urlencoded; charset=utf-8", b"job_type=five_steps&input=1"),
        ("multipart/form-data", b'{"job_type": "five_steps", "input": 1}'),
        (
            "multipart/form-data; boundary=x",
            b'--x\r\nContent-Disposition: form-data; name="job_type"\r\n\r\nfive_steps\r\n--x--\r\n',
        ),
        ("text/plain", b'{"job_type": "five_steps", "input": 1}'),
        ("application/json-patch+json", b'{"job_type": "five_steps", "input": 1}'),
        ("application/jsonl", b'{"job_type": "five_steps", "input": 1}'),
        ("application/json; charset=latin-1", b'{"job_type": "five_steps", "input": 1}'),
    ],
)
def test_api_start_body_that_is_not_json_is_415_and_starts_nothing(
    api: Api, content_type: str, raw: bytes
) -> None:
    before = job_count(api)

    status, _, body = api.call("POST", "/jobs", raw=raw, content_type=content_type)

    assert (status, error_code(body)) == (415, "unsupported_media_type")
    assert "application/json" in body["error"]["message"]
    assert job_count(api) == before


def test_api_form_body_sent_to_a_route_without_a_body_is_415_and_cancels_nothing(api: Api) -> None:
    job_id = api.start("five_steps", 1)
    api.local.wait(job_id)

    status, _, body = api.call(
        "POST",
        f"/jobs/{job_id}/cancel",
        raw=b"reason=because",
        content_type="application/x-www-form-urlencoded",
    )

    assert (status, error_code(body)) == (415, "unsupported_media_type")
    assert api.call("GET", f"/jobs/{job_id}")[2]["status"] == JobStatus.COMPLETED


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/jobs", b'[{"job_type": "five_steps", "input": 1}]'),
        ("/jobs/some-job/signals/approval", b'[{"payload": 1}]'),
    ],
)
def test_api_body_that_is_a_json_array_is_422_not_read_as_its_first_element(
    api: Api, path: str, raw: bytes
) -> None:
    before = job_count(api)

    status, _, body = api.call("POST", path, raw=raw)

    assert (status, error_code(body)) == (422, "validation_error")
    assert job_count(api) == before


# -- parameter patterns and cursors ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/jobs/%0D",
        "/jobs/caf%C3%A9",
        "/jobs/.hidden/events",
        "/jobs/a%20b/trace",
        "/jobs/x/signals/app%20roval",
    ],
)
def test_api_id_or_name_outside_its_pattern_is_400_invalid_parameter(api: Api, path: str) -> None:
    method = "POST" if "/signals/" in path else "GET"

    status, _, body = api.call(method, path, {} if method == "POST" else None)

    assert (status, error_code(body)) == (400, "invalid_parameter")


@pytest.mark.parametrize(
    "path",
    [
        "/jobs?cursor=bad",
        "/jobs?cursor=1.",
        "/jobs?cursor=.x",
        "/jobs/x/events?cursor=-1",
        "/jobs/x/events?cursor=a",
    ],
)
def test_api_cursor_outside_its_pattern_is_400_invalid_cursor(api: Api, path: str) -> None:
    status, _, body = api.call("GET", path)

    assert (status, error_code(body)) == (400, "invalid_cursor")


def test_api_job_cursor_that_fits_the_pattern_is_a_position_never_refused(api: Api) -> None:
    job_id = api.start("five_steps", 1)
    api.local.wait(job_id)

    _, _, oldest = api.call("GET", "/jobs?cursor=0.a")
    _, _, newest = api.call("GET", "/jobs?limit=100&cursor=9999999999999999.z")

    assert oldest == {"jobs": [], "next_cursor": None}
    assert job_id in {job["job_id"] for job in newest["jobs"]}


def test_api_event_cursor_that_fits_the_pattern_resumes_after_that_seq(api: Api) -> None:
    job_id = api.start("five_steps", 2)
    api.local.wait(job_id)

    _, _, after_first = api.call("GET", f"/jobs/{job_id}/events?cursor=0")
    _, _, past_the_end = api.call("GET", f"/jobs/{job_id}/events?cursor=999999999")
    unknown, _, body = api.call("GET", "/jobs/no-such-job/events?cursor=3")

    assert [event["seq"] for event in after_first["events"]] == [1, 2, 3]
    assert past_the_end == {"events": [], "next_cursor": None}
    assert (unknown, error_code(body)) == (404, "job_not_found")


# -- the served document and job inputs -----------------------------------------------------------


def served_document(api: Api) -> dict[str, Any]:
    status, _, spec = api.call("GET", "/openapi.json")
    assert status == 200
    return dict(spec)


def test_api_document_offers_exactly_the_app_job_types_each_with_its_input_schema(api: Api) -> None:
    spec = served_document(api)
    variants = spec["components"]["schemas"]["StartJobRequest"]["oneOf"]
    by_type = {v["properties"]["job_type"]["const"]: v for v in variants}

    assert sorted(by_type) == api.local.runtimes[0].app.job_types
    assert by_type["five_steps"]["properties"]["input"]["type"] == "integer"
    assert by_type["five_steps"]["required"] == ["job_type", "input"]
    order = by_type["payment"]["properties"]["input"]
    assert (order["title"], order["required"]) == ("Order", ["order_id", "amount"])
    assert all(v["additionalProperties"] is False for v in variants)


def test_api_document_links_a_started_job_to_every_operation_on_it(api: Api) -> None:
    spec = served_document(api)
    on_a_job = {
        operation["operationId"]
        for path, operations in spec["paths"].items()
        if path.startswith("/jobs/{job_id}")
        for operation in operations.values()
    }
    links = spec["paths"]["/jobs"]["post"]["responses"]["201"]["links"]

    assert set(links) == on_a_job and len(on_a_job) >= 5
    assert {link["parameters"]["job_id"] for link in links.values()} == {"$response.body#/job_id"}


def test_api_document_parameters_carry_the_patterns_the_server_checks(api: Api) -> None:
    spec = served_document(api)
    parameters = {
        (path, p["name"]): p["schema"]
        for path, operations in spec["paths"].items()
        for operation in operations.values()
        for p in operation.get("parameters", [])
    }

    assert "pattern" in parameters[("/jobs/{job_id}", "job_id")]
    assert "pattern" in parameters[("/jobs/{job_id}/signals/{name}", "name")]
    cursor = parameters[("/jobs", "cursor")]
    assert any("pattern" in option for option in cursor.get("anyOf", [cursor]))


@pytest.mark.parametrize(
    ("input", "expected"),
    [
        (True, 422),  # a boolean is no integer in JSON Schema, though pydantic's lax mode takes it
        ("3", 422),
        (3.0, 201),  # an integral number is an integer in JSON Schema
        (2, 201),
    ],
)
def test_api_start_input_is_checked_as_strictly_as_the_document_says(
    api: Api, input: Any, expected: int
) -> None:
    status, _, body = api.call("POST", "/jobs", {"job_type": "five_steps", "input": input})

    assert status == expected, body
    if expected == 422:
        assert error_code(body) == "invalid_input"


def test_api_unknown_job_type_is_400_and_names_no_registered_type(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs", {"job_type": "teleport", "input": 1})

    assert (status, error_code(body)) == (400, "unknown_job_type")
    message = json.dumps(body)
    assert not any(job_type in message for job_type in api.local.runtimes[0].app.job_types)
