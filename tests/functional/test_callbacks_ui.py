"""The callback approval page (``Callback.url``: ``/ui/callback.html#t=<token>``) in a real browser:
Debian's Chromium driven by playwright on a ``LocalStack`` (the HTTP API behind the API Gateway
bridge, with a bearer token required everywhere but the callback routes, as on AWS).

A human opens the link from the job, sees which wait it answers, and approves or rejects it; the
job carries on with that answer. The token never stays in the address bar. Skipped (with the
reason) where Chromium or playwright is missing, as in ``test_ui_browser.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, CallbackFailed, JobContext, StepContext
from aetheris_infra.local_stack import LocalStack
from tests.functional.test_ui_browser import TIMEOUT_MS, browser  # noqa: F401 - the shared fixture

API_TOKEN = "operator-token-ui-cb"
links: dict[str, str] = {}


def callback_app() -> App:
    app = App("callback-ui")

    def mail(sctx: StepContext, job_id: str, url: str) -> None:
        links[job_id] = url  # the e-mail the approver gets

    @app.job("expense")
    def expense(ctx: JobContext, amount: int) -> dict[str, Any]:
        cb = ctx.callback("manager-approval", timeout=timedelta(hours=4))
        ctx.step(mail, ctx.job_id, cb.url)
        try:
            return {"approved": cb.wait()}
        except CallbackFailed as rejected:
            return {"rejected": [rejected.code, rejected.message]}

    return app


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with LocalStack(callback_app(), workers=1, api_token=API_TOKEN) as running:
        yield running


def job(page: Any, base: str, status: str | None = None, job_id: str | None = None) -> dict[str, Any]:
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    if job_id is None:
        answer = page.request.post(f"{base}/jobs", data={"job_type": "expense", "input": 120}, headers=auth)
        assert answer.status == 201, answer.text()
        job_id = str(answer.json()["job_id"])
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while True:
        current: dict[str, Any] = page.request.get(f"{base}/jobs/{job_id}", headers=auth).json()
        if status is None or current["status"] == status:
            return current
        assert time.monotonic() < deadline, current
        page.wait_for_timeout(100)  # polling an HTTP API: the deadline, not this pause, bounds it


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_callback_page_shows_the_wait_and_its_answer_reaches_the_job(
    browser: Any,  # noqa: F811
    stack: LocalStack,
    decision: str,
) -> None:
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    base = stack.api_url
    job_id = job(page, base)["job_id"]
    job(page, base, "WAITING", job_id)
    link = links[job_id]
    assert link.startswith("/ui/callback.html#t=v1.")  # no CallbackBaseUrl: a path on the API

    page.goto(base + link)
    page.wait_for_selector("#wait:not([hidden])")
    shown = {key: page.inner_text(f"#wait-{key}") for key in ("name", "job")}
    page.fill("#comment", f"{decision.removesuffix('e')}ed from the browser")
    page.click(f"#{decision}")
    page.wait_for_selector("#done:not([hidden])")

    assert shown == {"name": "manager-approval", "job": job_id}
    assert "#t=" not in page.url  # the token left the address bar as soon as it was read
    finished = job(page, base, "COMPLETED", job_id)
    expected = (
        {"approved": {"approved": True, "comment": "approved from the browser"}}
        if decision == "approve"
        else {"rejected": ["rejected", "rejected from the browser"]}
    )
    assert finished["result"] == expected

    # The same link again: the wait has its answer, a different one is refused and nothing is sent.
    page.close()
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base + link)
    page.wait_for_selector("#wait:not([hidden])")
    page.fill("#comment", "second thoughts")
    page.click("#reject" if decision == "approve" else "#approve")
    page.wait_for_selector("#done:not([hidden])")
    assert "callback_used" in page.inner_text("#flash")
    page.close()


def test_callback_page_without_a_token_says_so(browser: Any, stack: LocalStack) -> None:  # noqa: F811
    page = browser.new_page()
    page.goto(f"{stack.api_url}/ui/callback.html")
    page.wait_for_selector("#flash.error")
    assert "no callback token" in page.inner_text("#flash")
    assert page.is_hidden("#wait")
    page.close()
