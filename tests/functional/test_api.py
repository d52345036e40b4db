"""The HTTP API over real HTTP: the local bridge turns requests into HTTP API v2 events for the handler.

Each test runs the API handler behind ``aetheris_infra.http_bridge`` against a ``LocalRuntime``
(moto, tables and queues from ``template.yaml``) installed with ``hosting.use``; jobs are driven to
the end with ``local.wait``. The sample events in ``events/`` are checked against the handler
directly and against what the bridge builds.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, hosting
from aetheris._store.listing import Listing
from aetheris.testing import LocalRuntime
from aetheris_infra.http_bridge import serve
from aetheris_infra.lambda_events import LocalLambdaContext
from api.app import handler
from tests.functional.jobs import Calls, build_app

EVENTS = Path(__file__).parents[2] / "events"
POST_EVENT = EVENTS / "api_post_job.json"
GET_EVENT = EVENTS / "api_get_job.json"


@dataclass
class Api:
    local: LocalRuntime
    url: str

    def call(
        self, method: str, path: str, body: Any = None, *, raw: bytes | None = None, content_type: str = ""
    ) -> tuple[int, dict[str, str], Any]:
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        headers = {"content-type": content_type or "application/json", "accept": "application/json"}
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), json.loads(error.read() or b"null")

    def start(self, job_type: str, input: Any = None, **extra: Any) -> str:
        status, _, body = self.call("POST", "/jobs", {"job_type": job_type, "input": input, **extra})
        assert status == 201, body
        return str(body["job_id"])


@contextmanager
def running_api(app: App) -> Iterator[Api]:
    with LocalRuntime(app) as local, serve(handler) as bridge:
        hosting.use(local.runtimes[0])
        try:
            yield Api(local, bridge.url)
        finally:
            hosting.use(None)


@pytest.fixture
def api() -> Iterator[Api]:
    with running_api(build_app(Calls())) as running:
        yield running


def error_code(body: Any) -> str:
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return str(body["error"]["code"])


# -- starting and reading a job -------------------------------------------------------------------


def test_api_started_job_once_finished_shows_completed_result_and_events_in_order(api: Api) -> None:
    job_id = api.start("five_steps", 2)
    api.local.wait(job_id)

    status, _, job = api.call("GET", f"/jobs/{job_id}")
    _, _, log = api.call("GET", f"/jobs/{job_id}/events")

    assert status == 200
    assert (job["status"], job["result"], job["job_type"]) == ("COMPLETED", [10, 20], "five_steps")
    assert (job["current_step"], job["attempt"], job["last_seq"]) == ("s2", 1, 3)
    step = EventType.STEP_COMMITTED
    assert [e["type"] for e in log["events"]] == [EventType.JOB_CREATED, step, step, EventType.JOB_COMPLETED]
    assert [e["seq"] for e in log["events"]] == [0, 1, 2, 3]
    assert log["next_cursor"] is None


def test_api_job_parked_on_a_signal_shows_what_it_waits_for() -> None:
    app = App("waits")

    @app.job("approve")
    def approve(ctx: JobContext, _: None) -> str:
        return str(ctx.wait_for_signal("approval"))

    with running_api(app) as api:
        job_id = api.start("approve")
        api.local.run_until_idle()
        _, _, job = api.call("GET", f"/jobs/{job_id}")

    assert (job["status"], job["waiting_for"], job["current_step"]) == ("WAITING", "approval", None)


def test_api_start_same_idempotency_key_twice_answers_201_then_200_with_same_job(api: Api) -> None:
    request = {"job_type": "five_steps", "input": 1, "idempotency_key": "order-7"}
    first_status, first_headers, first = api.call("POST", "/jobs", request)
    second_status, _, second = api.call("POST", "/jobs", request)

    assert (first_status, second_status) == (201, 200)
    assert first["job_id"] == second["job_id"]
    assert first_headers["Location"] == f"/jobs/{first['job_id']}"
    assert len(api.call("GET", "/jobs")[2]["jobs"]) == 1


def test_api_start_reused_key_with_other_input_is_409_idempotency_conflict(api: Api) -> None:
    api.start("five_steps", 1, idempotency_key="order-8")
    again = {"job_type": "five_steps", "input": 2, "idempotency_key": "order-8"}
    status, _, body = api.call("POST", "/jobs", again)
    assert (status, error_code(body)) == (409, "idempotency_conflict")


def test_api_get_unknown_job_is_404_job_not_found(api: Api) -> None:
    status, _, body = api.call("GET", "/jobs/no-such-job")
    assert (status, error_code(body)) == (404, "job_not_found")


def test_api_start_unknown_job_type_is_400_unknown_job_type_without_listing_the_known_ones(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs", {"job_type": "teleport", "input": 1})
    assert (status, error_code(body)) == (400, "unknown_job_type")
    assert "teleport" in body["error"]["message"] and "five_steps" not in body["error"]["message"]


def test_api_start_without_job_type_is_422_validation_error_naming_the_field(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs", {"input": 1})
    assert (status, error_code(body)) == (422, "validation_error")
    assert "job_type" in body["error"]["message"]


def test_api_start_malformed_json_is_400_malformed_json(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs", raw=b'{"job_type": "five_steps",')
    assert (status, error_code(body)) == (400, "malformed_json")


def test_api_start_body_over_256_kib_is_413_payload_too_large(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs", {"job_type": "five_steps", "input": "x" * (256 * 1024)})
    assert (status, error_code(body)) == (413, "payload_too_large")
    assert api.call("GET", "/jobs")[2]["jobs"] == []


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "expected"),
    [
        pytest.param(
            "POST",
            "/jobs",
            {"job_type": "five_steps", "input": "many"},
            "",
            (422, "invalid_input"),
            id="input_refused_by_job_type",
        ),
        pytest.param(
            "POST",
            "/jobs",
            {"job_type": "five_steps", "idempotency_key": ""},
            "",
            (422, "validation_error"),
            id="empty_idempotency_key",
        ),
        pytest.param(
            "POST",
            "/jobs",
            {"job_type": "five_steps", "inptu": 1},
            "",
            (422, "validation_error"),
            id="unknown_body_field",
        ),
        pytest.param(
            "POST",
            "/jobs",
            {"job_type": "five_steps"},
            "text/plain",
            (415, "unsupported_media_type"),
            id="body_not_json_content_type",
        ),
        pytest.param("GET", "/jobs?status=DONE", None, "", (400, "invalid_parameter"), id="unknown_status"),
        pytest.param("GET", "/jobs?limit=101", None, "", (400, "invalid_parameter"), id="limit_over_100"),
        pytest.param("GET", "/jobs?cursor=bad", None, "", (400, "invalid_cursor"), id="forged_cursor"),
        pytest.param(
            "GET", "/jobs/no-such-job/events", None, "", (404, "job_not_found"), id="events_of_unknown_job"
        ),
        pytest.param("DELETE", "/jobs", None, "", (405, "method_not_allowed"), id="method_without_route"),
        pytest.param("GET", "/nowhere", None, "", (404, "not_found"), id="unknown_path"),
    ],
)
def test_api_bad_request_gets_its_4xx_and_error_code(
    api: Api, method: str, path: str, body: Any, content_type: str, expected: tuple[int, str]
) -> None:
    status, _, answer = api.call(method, path, body, content_type=content_type)
    assert (status, error_code(answer)) == expected


def test_api_failure_inside_the_runtime_is_500_internal_error_without_trace(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(job_id: str) -> None:
        raise RuntimeError("table on fire")

    monkeypatch.setattr(api.local.runtimes[0].services.jobs, "load", broken)
    status, _, body = api.call("GET", "/jobs/any-job")

    assert (status, error_code(body)) == (500, "internal_error")
    assert "on fire" not in body["error"]["message"] and "Traceback" not in body["error"]["message"]


# -- listings -------------------------------------------------------------------------------------


def test_api_list_by_status_pages_through_every_job_with_the_cursor(api: Api) -> None:
    job_ids = {api.start("five_steps", 1) for _ in range(3)}
    for job_id in job_ids:
        api.local.wait(job_id)

    _, _, first = api.call("GET", "/jobs?status=COMPLETED&limit=2")
    _, _, second = api.call("GET", f"/jobs?status=COMPLETED&limit=2&cursor={first['next_cursor']}")
    # A cursor is a position: it continues any listing of jobs below it (here: no FAILED job).
    foreign, _, other = api.call("GET", f"/jobs?status=FAILED&cursor={first['next_cursor']}")

    assert len(first["jobs"]) == 2 and first["next_cursor"]
    assert len(second["jobs"]) == 1 and second["next_cursor"] is None
    assert {job["job_id"] for job in first["jobs"] + second["jobs"]} == job_ids
    assert {job["status"] for job in first["jobs"] + second["jobs"]} == {"COMPLETED"}
    assert api.call("GET", "/jobs?status=PENDING")[2] == {"jobs": [], "next_cursor": None}
    assert (foreign, other) == (200, {"jobs": [], "next_cursor": None})


def test_api_list_without_status_merges_statuses_newest_first(api: Api) -> None:
    done = api.start("five_steps", 1)
    api.local.wait(done)
    api.local.advance(timedelta(seconds=5))
    pending = api.start("five_steps", 1)  # not driven: stays PENDING, changed last

    _, _, first = api.call("GET", "/jobs?limit=1")
    _, _, second = api.call("GET", f"/jobs?limit=1&cursor={first['next_cursor']}")

    assert [(j["job_id"], j["status"]) for j in first["jobs"]] == [(pending, "PENDING")]
    assert [(j["job_id"], j["status"]) for j in second["jobs"]] == [(done, "COMPLETED")]
    assert second["next_cursor"] is None


def test_api_events_page_through_the_log_in_seq_order(api: Api) -> None:
    job_id = api.start("five_steps", 3)
    api.local.wait(job_id)

    seqs: list[int] = []
    pages = 0
    path = f"/jobs/{job_id}/events?limit=2"
    while path:
        status, _, page = api.call("GET", path)
        assert status == 200 and len(page["events"]) <= 2
        seqs += [event["seq"] for event in page["events"]]
        pages += 1
        path = f"/jobs/{job_id}/events?limit=2&cursor={page['next_cursor']}" if page["next_cursor"] else ""

    assert seqs == [0, 1, 2, 3, 4]
    assert pages == 3


def test_listing_events_page_stops_at_the_byte_budget_but_never_empty(api: Api) -> None:
    job_id = api.start("five_steps", 1)
    api.local.wait(job_id)
    listing = Listing(api.local.runtimes[0].services.jobs.table)

    page = listing.events(job_id, limit=100, max_bytes=1)
    assert page is not None and len(page.items) == 1 and page.next_cursor
    rest = listing.events(job_id, limit=100, cursor=page.next_cursor)
    assert rest is not None and [item["seq"] for item in rest.items] == [1, 2]


# -- the spec and the sample events ---------------------------------------------------------------


def test_api_openapi_json_lists_the_routes_and_models(api: Api) -> None:
    status, _, spec = api.call("GET", "/openapi.json")

    assert status == 200 and spec["openapi"].startswith("3.")
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/events"} <= set(spec["paths"])
    assert set(spec["paths"]["/jobs"]) == {"get", "post"}
    assert "201" in spec["paths"]["/jobs"]["post"]["responses"]
    assert {"StartJobRequest", "JobDetail", "ErrorResponse"} <= set(spec["components"]["schemas"])
    assert "/openapi.json" not in spec["paths"]
    assert set(spec["paths"]["/jobs"]["get"]["responses"]) == {"200", "400", "403", "415", "500"}  # no 422
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_api_handler_sample_post_event_starts_the_job_with_201(api: Api) -> None:
    answer = handler(json.loads(POST_EVENT.read_text()), LocalLambdaContext())

    assert answer["statusCode"] == 201
    job_id = json.loads(answer["body"])["job_id"]
    assert api.local.get(job_id).idempotency_key == "sample-order-1001"
    assert api.local.wait(job_id).result == [10, 20]


def test_api_handler_sample_get_event_reads_the_job_or_404(api: Api) -> None:
    job_id = api.start("five_steps", 1)
    unknown = json.loads(GET_EVENT.read_text())
    known = json.loads(GET_EVENT.read_text())
    known["rawPath"] = known["requestContext"]["http"]["path"] = f"/jobs/{job_id}"

    found = handler(known, LocalLambdaContext())
    missing = handler(unknown, LocalLambdaContext())

    assert (found["statusCode"], json.loads(found["body"])["job_id"]) == (200, job_id)
    assert (missing["statusCode"], error_code(json.loads(missing["body"]))) == (404, "job_not_found")


# -- the bridge -----------------------------------------------------------------------------------


def shape(value: Any) -> Any:
    """The nested keys of an event; header names vary by client, so headers count as one leaf."""
    if isinstance(value, dict):
        return {key: "headers" if key == "headers" else shape(item) for key, item in value.items()}
    return type(value).__name__


def test_bridge_requests_become_events_of_the_sample_events_shape() -> None:
    seen: list[tuple[dict[str, Any], Any]] = []

    def capture(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append((event, context))
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": "{}"}

    with serve(capture) as bridge:
        urllib.request.urlopen(bridge.url + "/jobs/9d8a4c1e-0000-4000-8000-000000000001", timeout=30).close()
        post = urllib.request.Request(
            bridge.url + "/jobs", data=b'{"job_type": "x"}', headers={"content-type": "application/json"}
        )
        urllib.request.urlopen(post, timeout=30).close()

    (get_event, context), (post_event, _) = seen
    assert shape(get_event) == shape(json.loads(GET_EVENT.read_text()))
    assert shape(post_event) == shape(json.loads(POST_EVENT.read_text()))
    assert post_event["requestContext"]["http"]["method"] == "POST"
    assert (post_event["body"], post_event["isBase64Encoded"]) == ('{"job_type": "x"}', False)
    assert isinstance(context, LocalLambdaContext)
    assert context.aws_request_id == get_event["requestContext"]["requestId"]


def test_bridge_query_cookies_binary_bodies_pass_both_ways_like_api_gateway() -> None:
    seen: list[dict[str, Any]] = []

    def capture(event: dict[str, Any], context: Any) -> dict[str, Any]:
        seen.append(event)
        body = base64.b64encode(b"\x00\x01").decode()
        return {"statusCode": 202, "cookies": ["s=1"], "body": body, "isBase64Encoded": True}

    with serve(capture) as bridge:
        request = urllib.request.Request(
            bridge.url + "/p?a=1&a=2&b=",
            data=b"\xff\x00",
            method="PUT",
            headers={"Content-Type": "application/octet-stream", "Cookie": "x=1; y=2"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = (response.status, response.read(), response.headers.get_all("Set-Cookie"))

    event = seen[0]
    assert (event["rawPath"], event["rawQueryString"]) == ("/p", "a=1&a=2&b=")
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["cookies"] == ["x=1", "y=2"] and "cookie" not in event["headers"]
    assert event["isBase64Encoded"] and base64.b64decode(event["body"]) == b"\xff\x00"
    assert answer == (202, b"\x00\x01", ["s=1"])


def test_bridge_handler_that_raises_answers_api_gateway_500() -> None:
    def broken(event: dict[str, Any], context: Any) -> dict[str, Any]:
        raise RuntimeError("boom")

    with serve(broken) as bridge, pytest.raises(urllib.error.HTTPError) as failure:
        urllib.request.urlopen(bridge.url + "/jobs", timeout=30)

    assert failure.value.code == 500
    assert json.loads(failure.value.read()) == {"message": "Internal Server Error"}
