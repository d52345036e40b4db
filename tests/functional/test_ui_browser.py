"""The operator UI (``GET /ui``) in a real browser: Debian's Chromium driven by playwright, on a
``LocalStack`` (moto server, two worker threads polling SQS, the signal poller, the sweeper, the HTTP
API behind the API Gateway bridge) on the real clock.

The job goes through a worker crash (the worker dies after the charge, before recording it), a
retry (the mail relay drops the first connection), a human decision sent from the UI's own form,
and the compensation that decision causes. The page must show both attempts of the charge, the
crash and the takeover, and the job moving once the signal is sent. Screenshots are saved under
the test's ``tmp_path`` and copied to ``tests/artifacts/`` (ignored by git).

Where Chromium or playwright is missing, or Chromium cannot start, the tests are skipped with that
reason — never passed without a browser.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from aetheris import App, JobContext, NonRetryableError, RetryPolicy, StepContext
from aetheris._engine.faults import SimulatedCrash
from aetheris.handlers.api import handler as api_handler
from aetheris_infra.cli_timeline import timeline_rows
from aetheris_infra.http_bridge import BridgeServer, serve
from aetheris_infra.local_stack import LocalStack, bind

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parents[1] / "artifacts"
TIMEOUT_MS = 30_000
TOKEN = "s3cret-operator-token"


def ui_app() -> App:
    app = App("ui-test")
    once = {"crash": threading.Event(), "flaky": threading.Event()}

    def reserve(sctx: StepContext, seat: str) -> str:
        return f"held {seat}"

    def release(sctx: StepContext, seat: str) -> str:
        return f"released {seat}"

    def charge_api(amount: int, api_key: str) -> str:
        return f"ch_{amount}"

    def charge(sctx: StepContext, amount: int) -> str:
        charged = sctx.tool("payments.charge", charge_api, amount, api_key="sk-live-123")
        if not once["crash"].is_set():
            once["crash"].set()
            raise SimulatedCrash("after_effect")  # the worker dies: charged, not recorded
        return charged

    def notify(sctx: StepContext, who: str) -> str:
        if not once["flaky"].is_set():
            once["flaky"].set()
            raise ConnectionError("mail relay reset the connection")
        return f"told {who}"

    @app.job("ping")
    def ping(ctx: JobContext, n: int) -> int:
        return n

    @app.job("seat.order")
    def order(ctx: JobContext, seat: str) -> str:
        ctx.step(reserve, seat, compensate=release)
        ctx.step(charge, 30)
        ctx.step(notify, "ops", retry=RetryPolicy(initial_interval=timedelta(milliseconds=200)))
        decision: dict[str, Any] = ctx.wait_for_signal("approval", timeout=timedelta(hours=1))
        if not decision.get("approved"):
            raise NonRetryableError(f"rejected by {decision.get('by')}")
        return "booked"

    return app


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import Error, sync_playwright
    except ImportError as missing:
        pytest.skip(f"playwright is not installed ({missing}); `make install` adds it")
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `apt-get install -y chromium` (make test tries it)")
    with sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS, headless=True)
        except Error as error:
            pytest.skip(f"Chromium at {CHROMIUM} cannot be launched here: {error.message.splitlines()[0]}")
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    # Short leases and visibility timeouts, so the takeover after the crash takes seconds.
    with LocalStack(
        ui_app(), workers=2, lease=timedelta(seconds=1), sweep_every=timedelta(milliseconds=500)
    ) as running:
        assert running.resources is not None
        sqs = boto3.client("sqs", endpoint_url=running.endpoint_url, region_name="us-east-1")
        sqs.set_queue_attributes(
            QueueUrl=running.resources.step_queue_url, Attributes={"VisibilityTimeout": "1"}
        )
        yield running


def screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)
    return path


def start(page: Any, base: str, seat: str) -> str:
    answer = page.request.post(f"{base}/jobs", data={"job_type": "seat.order", "input": seat})
    assert answer.status == 201, answer.text()
    return str(answer.json()["job_id"])


def until_status(page: Any, base: str, job_id: str, status: str) -> None:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while page.request.get(f"{base}/jobs/{job_id}").json()["status"] != status:
        assert time.monotonic() < deadline, f"job {job_id} never became {status}"
        page.wait_for_timeout(100)  # polling an HTTP API: the deadline, not this pause, bounds it


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the crashed worker
def test_ui_job_page_shows_crash_takeover_retry_and_moves_after_a_signal_from_its_form(
    browser: Any, stack: LocalStack, tmp_path: Path
) -> None:
    began = time.monotonic()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(TIMEOUT_MS)
    base = stack.api_url
    job_id = start(page, base, "4B")
    until_status(page, base, job_id, "WAITING")

    page.goto(f"{base}/ui")
    page.select_option("#status-filter", "WAITING")
    page.locator(f'tr[data-job="{job_id}"] a').click()
    page.wait_for_selector("#timeline")
    charge = page.locator('#timeline .tl-row[data-kind="attempt"][data-op="1"]')
    crashed = charge.locator('xpath=self::*[@data-outcome="crashed"]')
    committed = charge.locator('xpath=self::*[@data-outcome="committed"]')
    screenshot(page, tmp_path, "job-waiting")

    assert charge.count() == 2
    assert (crashed.get_attribute("data-fence"), committed.get_attribute("data-fence")) == ("1", "2")
    survivor = committed.get_attribute("data-worker")
    assert f"crashed: lease expired, taken over by {survivor}" in crashed.inner_text()
    assert f"took over from {crashed.get_attribute('data-worker')}" in committed.inner_text()
    notify = page.locator('#timeline .tl-row[data-kind="attempt"][data-op="2"]')
    assert [notify.nth(i).get_attribute("data-outcome") for i in range(notify.count())] == [
        "failed",
        "committed",
    ]
    assert page.locator("#timeline .tl-bar.backoff").count() == 1
    trace = page.request.get(f"{base}/jobs/{job_id}/trace").json()
    (recorded,) = trace["operations"][1]["effects"]
    effect = page.locator('#effects tr[data-effect="payments.charge"]').inner_text()
    assert recorded["idempotency_key"] in effect and "RECORDED" in effect
    assert page.locator('#causes li[data-kind="attempt"]').count() == 5  # 2 charge, 2 notify, 1 reserve

    # The CLI's `aetheris trace` draws the same rows from the same trace.
    ui_rows = page.eval_on_selector_all(
        '#timeline .tl-row[data-kind="attempt"]',
        "rows => rows.map(r => [+r.dataset.op, r.dataset.outcome, r.dataset.worker, +r.dataset.fence])",
    )
    cli_rows = [
        [r.op, r.outcome, r.worker, r.fence]
        for r in timeline_rows(trace, datetime.now(UTC))
        if r.what.startswith("attempt ")
    ]
    assert ui_rows == cli_rows and page.locator("#timeline .tl-row").count() == len(
        timeline_rows(trace, datetime.now(UTC))
    )

    page.fill("#signal-payload", '{"approved": false, "by": "browser"}')
    assert page.input_value("#signal-name") == "approval"
    page.click('#signal-form button[type="submit"]')
    page.wait_for_selector('#job-facts[data-status="FAILED"]')
    screenshot(page, tmp_path, "job-compensated")

    undo = page.locator(
        '#timeline .tl-row[data-kind="attempt"][data-outcome="committed"]', has_text="undo-reserve"
    )
    assert undo.count() == 1
    assert "released by" in page.locator('#timeline .tl-row[data-kind="wait"]').inner_text()
    assert "undoes → op:0" in page.locator("#causes").inner_text()
    print(f"browser test: {time.monotonic() - began:.1f} s from start to compensated")


def test_ui_stuck_and_summary_pages_render_or_say_the_route_is_missing(
    browser: Any, stack: LocalStack, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)

    page.goto(f"{stack.api_url}/ui#/stuck")
    stuck = page.wait_for_selector("#stuck").inner_text()
    page.goto(f"{stack.api_url}/ui#/summary")
    summary = page.wait_for_selector("#summary").inner_text()
    screenshot(page, tmp_path, "summary")

    assert "Nothing is stuck" in stuck or "no GET /observability/stuck" in stuck or "job_id" in stuck
    assert "no GET /observability/summary" in summary or "jobs" in summary


SUMMARY = {
    "generated_at": "2026-12-01T10:00:00+00:00",
    "jobs": {"RUNNING": 3, "WAITING": 7},
    "finished_last_hour": {"COMPLETED": 12},
    "oldest_age_seconds": {"PENDING": None, "WAITING": 86400},
    "queues": {"step": {"visible": 4, "in_flight": 1, "delayed": 0}, "step_dlq": {"visible": 2}},
    "stuck": 1,
}
STUCK = {
    "threshold_seconds": 300,
    "jobs": [
        {
            "job_id": "j-stuck-1",
            "job_type": "seat.order",
            "status": "RUNNING",
            "reason": "lease_expired",
            "since": "2026-12-01T09:50:00+00:00",
            "evidence": {"worker_id": "worker-9", "fence": 3},
        },
        {"job_id": "j-stuck-2", "reason": "dlq"},  # fields missing: rendered anyway
    ],
}


def test_ui_summary_and_stuck_pages_render_the_observability_answers_generically(
    browser: Any, stack: LocalStack, tmp_path: Path
) -> None:
    # The routes belong to GET /observability/*; here the browser is handed their documented shape.
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.route("**/observability/summary", lambda route: route.fulfill(json=SUMMARY))
    page.route("**/observability/stuck", lambda route: route.fulfill(json=STUCK))

    page.goto(f"{stack.api_url}/ui#/summary")
    summary = page.wait_for_selector("#summary").inner_text()
    queues = page.locator("main table").last.inner_text()
    screenshot(page, tmp_path, "summary-rendered")
    page.goto(f"{stack.api_url}/ui#/stuck")
    stuck = page.wait_for_selector("#stuck").inner_text()
    link = page.locator('#stuck a[href="#/job/j-stuck-1"]').count()

    assert "WAITING" in summary and "86400" in summary and "12" in summary
    assert "step_dlq" in queues and "in_flight" in queues
    assert "lease_expired" in stuck and "worker-9" in stuck and "j-stuck-2" in stuck and link == 1


def test_ui_job_list_filters_by_status_and_pages_forward_and_back(
    browser: Any, stack: LocalStack, tmp_path: Path
) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    pings = []
    for n in range(3):
        answer = page.request.post(f"{stack.api_url}/jobs", data={"job_type": "ping", "input": n})
        pings.append(answer.json()["job_id"])
    for job_id in pings:
        until_status(page, stack.api_url, job_id, "COMPLETED")

    page.goto(f"{stack.api_url}/ui#/jobs?status=COMPLETED&limit=1")
    first = page.wait_for_selector("#jobs tbody tr").get_attribute("data-job")
    page.click("#next-page")
    page.wait_for_function(f"() => document.querySelector('#jobs tbody tr')?.dataset.job !== '{first}'")
    second = page.locator("#jobs tbody tr").get_attribute("data-job")
    screenshot(page, tmp_path, "jobs-page-2")
    page.click("text=← Newer")
    page.wait_for_function(f"() => document.querySelector('#jobs tbody tr')?.dataset.job === '{first}'")
    statuses = page.locator("#jobs .status").all_inner_texts()

    assert first in pings and second in pings and first != second
    assert statuses == ["COMPLETED"] and page.locator("#jobs tbody tr").count() == 1
    assert page.input_value("#status-filter") == "COMPLETED"


@pytest.fixture(scope="module")
def guarded(stack: LocalStack) -> Iterator[BridgeServer]:
    """The same API behind a gateway that wants ``Authorization: Bearer TOKEN`` on the data routes
    (as a JWT authorizer would; the UI's static files stay open)."""

    def gateway(event: dict[str, Any], context: Any) -> Any:
        path = event["rawPath"]
        static = path == "/ui" or path.startswith("/ui/")
        if not static and event["headers"].get("authorization") != f"Bearer {TOKEN}":
            return {"statusCode": 401, "body": '{"message":"Unauthorized"}'}
        return api_handler(event, context)

    with serve(bind(stack.runtimes[0], gateway)) as bridge:
        yield bridge


def test_ui_behind_a_bearer_token_asks_for_it_and_keeps_it_in_the_tab_only(
    browser: Any, guarded: BridgeServer, tmp_path: Path
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)

    page.goto(f"{guarded.url}/ui")
    page.wait_for_selector("#token-form:not([hidden])")
    page.fill("#token-input", TOKEN)
    page.click('#token-form button[type="submit"]')
    page.wait_for_selector("#jobs, main p")
    screenshot(page, tmp_path, "token")
    stored = page.evaluate(
        "() => [sessionStorage.getItem('aetheris.token'), localStorage.length, document.cookie]"
    )
    other_tab = context.new_page()
    other_tab.goto(f"{guarded.url}/ui")
    other_tab.wait_for_selector("#token-form:not([hidden])")

    assert page.locator("#jobs tbody tr").count() >= 1
    assert stored == [TOKEN, 0, ""]
    context.close()
