"""Answers are bounded: a Lambda may return 6 MB, so big values come back as previews with an
``href``, and the route behind it serves the value whole or, past what one answer holds, sends the
client to S3 with a presigned URL.

Over real HTTP (the local bridge, the API handler) with moto as a loopback server, so the presigned
URL is one a plain HTTP client can follow. Every answer is measured as the Lambda would return it:
its body escaped once more inside the response document.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from aetheris import App, JobContext, StepContext, hosting
from aetheris.handlers.api_bounds import MAX_ANSWER_BYTES
from aetheris.testing import LocalRuntime
from aetheris_infra.http_bridge import serve
from api.app import handler
from tests.functional.test_api import Api, error_code

MB = 1_000_000
LAMBDA_ANSWER_LIMIT = 6 * 1024 * 1024


def bounds_app() -> App:
    app = App("bounds")

    def produce(sctx: StepContext, size: int) -> str:
        return "p" * size

    @app.job("produce")
    def produce_job(ctx: JobContext, size: int) -> str:
        return ctx.step(produce, size)

    def quoted(sctx: StepContext, units: int) -> str:
        return 'ppp"' * units

    @app.job("three")
    def three(ctx: JobContext, units: int) -> int:
        return sum(len(ctx.step(quoted, units, name=f"q{n}")) for n in range(3))

    @app.job("echo")
    def echo(ctx: JobContext, value: Any) -> Any:
        return value

    return app


@contextmanager
def running() -> Iterator[Api]:
    with LocalRuntime(bounds_app(), server=True) as local, serve(handler) as bridge:
        hosting.use(local.runtimes[0])
        try:
            yield Api(local, bridge.url)
        finally:
            hosting.use(None)


@pytest.fixture(scope="module")
def api() -> Iterator[Api]:
    with running() as started:
        yield started


@pytest.fixture(scope="module")
def seven_mb(api: Api) -> str:
    job_id = api.local.start("produce", 7 * MB)
    api.local.wait(job_id, timeout=120)
    return job_id


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def fetch(url: str, *, follow: bool = True) -> tuple[int, dict[str, str], str]:
    """GET ``url``: status, headers and the body text exactly as sent."""
    opener = urllib.request.build_opener() if follow else urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url), timeout=60) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def lambda_answer_bytes(body: str) -> int:
    """The body's size in the Lambda response document (a JSON string there, escaped once more)."""
    return len(json.dumps(body))


def test_api_job_with_a_7_mb_result_answers_under_6_mb_with_a_preview_and_its_href(
    api: Api, seven_mb: str
) -> None:
    status, _, body = fetch(f"{api.url}/jobs/{seven_mb}")
    job = json.loads(body)

    assert status == 200
    assert lambda_answer_bytes(body) < LAMBDA_ANSWER_LIMIT
    assert job["status"] == "COMPLETED" and job["truncated"] == ["result"]
    assert job["result"] == {
        "truncated": True,
        "bytes": 7 * MB + 2,
        "preview": '"' + "p" * 199,
        "href": f"/jobs/{seven_mb}/result",
    }


def test_api_whole_7_mb_result_is_a_303_to_a_presigned_url_serving_exactly_it(
    api: Api, seven_mb: str
) -> None:
    status, headers, body = fetch(f"{api.url}/jobs/{seven_mb}/result", follow=False)
    location = json.loads(body)
    _, _, whole = fetch(headers["Location"])  # straight from S3 (moto), no API in between

    assert status == 303 and location["url"] == headers["Location"]
    assert location["bytes"] == len(whole.encode()) == 7 * MB + 2
    assert hashlib.sha256(whole.encode()).hexdigest() == location["sha256"]
    assert json.loads(whole) == "p" * (7 * MB)
    # A client that follows redirects just gets the value.
    assert json.loads(fetch(f"{api.url}/jobs/{seven_mb}/result")[2]) == "p" * (7 * MB)


def test_api_events_of_a_7_mb_result_page_under_6_mb_each_big_result_a_preview_with_its_href(
    api: Api, seven_mb: str
) -> None:
    status, _, body = fetch(f"{api.url}/jobs/{seven_mb}/events")
    page = json.loads(body)
    previews = [e for e in page["events"] if isinstance(e["result"], dict)]

    assert status == 200 and lambda_answer_bytes(body) < LAMBDA_ANSWER_LIMIT
    assert [e["type"] for e in previews] == ["StepCommitted", "JobCompleted"]
    for event in previews:
        assert event["result"]["href"] == f"/jobs/{seven_mb}/events/{event['seq']}/result"
        assert event["result"]["bytes"] == 7 * MB + 2
        assert fetch(api.url + event["result"]["href"], follow=False)[0] == 303


def test_api_events_of_big_results_shown_whole_are_paged_under_the_limit_with_the_cursor(api: Api) -> None:
    # Each result is 0.85 MB stored, 1.9 MB in the answer (its quotes escaped twice): shown whole,
    # but three on one page (as a 4 MB page measured unescaped would hold) pass the answer budget.
    job_id = api.local.start("three", 170_000)
    api.local.wait(job_id, timeout=120)
    path, pages, results = f"/jobs/{job_id}/events", [], []
    while path:
        status, _, body = fetch(api.url + path)
        page = json.loads(body)
        assert status == 200 and lambda_answer_bytes(body) <= MAX_ANSWER_BYTES
        pages.append([e["seq"] for e in page["events"]])
        results += [e["result"] for e in page["events"] if e["type"] == "StepCommitted"]
        path = f"/jobs/{job_id}/events?cursor={page['next_cursor']}" if page["next_cursor"] else ""

    assert [seq for page in pages for seq in page] == list(range(5))
    assert len(pages) >= 2
    assert results == [json.dumps('ppp"' * 170_000)] * 3


def test_api_value_between_the_shown_size_and_the_answer_limit_comes_whole_from_its_href(api: Api) -> None:
    job_id = api.local.start("produce", 3 * MB)  # over SHOWN_VALUE_BYTES, under MAX_ANSWER_BYTES
    api.local.wait(job_id, timeout=60)
    job = api.call("GET", f"/jobs/{job_id}")[2]

    status, _, whole = fetch(api.url + job["result"]["href"])

    assert job["truncated"] == ["result"]
    assert status == 200 and json.loads(whole) == "p" * (3 * MB)


def test_api_job_whose_values_fit_only_one_at_a_time_previews_the_bigger_and_stays_under_6_mb(
    api: Api,
) -> None:
    # 1.9 MB of backslashes: 3.8 MB once escaped in the answer, 7.6 MB for input and result both.
    value = "\\" * 950_000
    job_id = api.local.start("echo", value)
    api.local.wait(job_id, timeout=60)

    status, _, body = fetch(f"{api.url}/jobs/{job_id}")
    job = json.loads(body)

    assert status == 200 and lambda_answer_bytes(body) <= MAX_ANSWER_BYTES
    assert len(job["truncated"]) == 1
    shown, cut = ("input", "result") if job["truncated"] == ["result"] else ("result", "input")
    assert job[shown] == value and job[cut]["href"] == f"/jobs/{job_id}/{cut}"
    assert json.loads(fetch(api.url + job[cut]["href"])[2]) == value


def test_api_small_values_are_shown_whole_and_their_routes_serve_them(api: Api) -> None:
    job_id = api.start("echo", {"q": "é"})
    api.local.wait(job_id)
    job = api.call("GET", f"/jobs/{job_id}")[2]

    assert (job["input"], job["result"], job["truncated"]) == ({"q": "é"}, {"q": "é"}, [])
    assert (
        api.call("GET", f"/jobs/{job_id}/input")[2]
        == api.call("GET", f"/jobs/{job_id}/result")[2]
        == {"q": "é"}
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/jobs/no-such-job/result", (404, "job_not_found")),
        ("/jobs/no-such-job/events/1/result", (404, "job_not_found")),
        ("/jobs/{job}/events/999/result", (404, "event_not_found")),
        ("/jobs/{job}/events/-1/result", (400, "invalid_parameter")),
    ],
)
def test_api_value_route_for_what_does_not_exist_is_its_4xx(
    api: Api, seven_mb: str, path: str, expected: tuple[int, str]
) -> None:
    status, _, body = api.call("GET", path.format(job=seven_mb))
    assert (status, error_code(body)) == expected
