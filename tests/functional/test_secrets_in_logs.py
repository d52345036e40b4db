"""Secrets and tokens never reach a log line: not the bearer token of a request, not a token in its
URL, not a secret inside a job's input or a signal's payload — at any level, DEBUG included.

Every logger there is gets a capturing handler for the test: the project's own (``aetheris.*`` and
the handlers' Powertools service loggers ``aetheris-*``) at DEBUG, every other one (the root logger,
boto, Powertools' internals) at INFO — their DEBUG is a developer's wire log (botocore logs every
request body, Powertools every route's arguments), switched on by ``POWERTOOLS_DEBUG`` or by hand,
never by the template. A ``LocalStack`` with an API token then runs a job through a step, a retry,
a signal, a bad request, a refused request and a crash of the HTTP function, and the captured lines
are searched for the planted values.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, JobContext, RetryPolicy, StepContext
from aetheris_infra.http_bridge import serve
from aetheris_infra.local_stack import LocalStack

TOKEN = "tok-SECRET-7c1e5b"
SECRET = "pw-SECRET-93a0f2"
URL_TOKEN = "url-SECRET-4d62aa"

secrets_app = App("secrets")
attempts: dict[str, int] = {}


def charge(sctx: StepContext, card: dict[str, str]) -> str:
    attempts["charge"] = attempts.get("charge", 0) + 1
    if attempts["charge"] == 1:
        raise ConnectionError("the card network timed out")  # retried: its error is logged
    return "charged"


@secrets_app.job("secrets.charge")
def charge_job(ctx: JobContext, card: dict[str, str]) -> Any:
    ctx.step(charge, card, retry=RetryPolicy(max_attempts=3, initial_delay=timedelta(milliseconds=10)))
    return ctx.wait_for_signal("approval", timeout=timedelta(hours=1))


tokens: list[str] = []


def hand_out(sctx: StepContext, token: str) -> None:
    tokens.append(token)


@secrets_app.job("secrets.callback")
def callback_job(ctx: JobContext, _: Any) -> Any:
    cb = ctx.callback("approval", timeout=timedelta(hours=1))
    ctx.step(hand_out, cb.token)
    ctx.logger.info("handed out", extra={"callback": repr(cb)})  # a callback's repr holds no token
    return cb.wait()


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text} {json.dumps(record.__dict__, default=str)}")


def watch(logger: logging.Logger, capture: Capture) -> None:
    ours = logger.name.startswith(("aetheris.", "aetheris-"))
    logger.addHandler(capture)
    logger.setLevel(logging.DEBUG if ours else logging.INFO)


@pytest.fixture
def captured() -> Iterator[Capture]:
    """A capturing handler on every logger, each at DEBUG, restored afterwards."""
    capture = Capture()
    loggers = [logging.getLogger(), *map(logging.getLogger, list(logging.Logger.manager.loggerDict))]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        watch(logger, capture)
    yield capture
    for logger, level in levels:
        logger.removeHandler(capture)
        logger.setLevel(level)


def request(url: str, method: str = "GET", body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    data = None if body is None else json.dumps(body).encode()
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data, headers, method=method), timeout=30
        ) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def leaks(lines: list[str]) -> list[str]:
    return [line[:300] for line in lines if any(s in line for s in (TOKEN, SECRET, URL_TOKEN))]


def leak_sources(lines: list[str]) -> set[str]:
    return {line.split(":")[0] + " | " + line.split(":", 1)[1][:70] for line in leaks(lines)}


def test_local_stack_logs_no_token_and_no_payload_secret_at_any_level(captured: Capture) -> None:
    # The handler modules log through Powertools loggers made at import: make sure they exist now.
    import aetheris.handlers.api
    import aetheris.handlers.signals
    import aetheris.handlers.worker  # noqa: F401

    with LocalStack(secrets_app, workers=1, api_token=TOKEN) as stack:
        for logger in (logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)):
            if captured not in logger.handlers:  # loggers the stack made while starting
                watch(logger, captured)
        api = stack.api_url
        status, started = request(
            f"{api}/jobs", "POST", {"job_type": "secrets.charge", "input": {"pw": SECRET}}
        )
        assert status == 201, started
        job_id = started["job_id"]
        deadline = time.monotonic() + 30
        while request(f"{api}/jobs/{job_id}")[1]["status"] != "WAITING":
            assert time.monotonic() < deadline
            time.sleep(0.05)  # polling over HTTP; the deadline bounds it
        assert (
            request(f"{api}/jobs/{job_id}/signals/approval", "POST", {"payload": {"otp": SECRET}})[0] == 202
        )
        assert request(f"{api}/jobs?cursor=x&token={URL_TOKEN}")[0] == 400
        assert request(f"{api}/jobs/{job_id}?access_token={URL_TOKEN}", token=f"{TOKEN}-wrong")[0] == 401
        assert request(f"{api}/jobs/{job_id}/trace")[0] == 200
        deadline = time.monotonic() + 30
        while request(f"{api}/jobs/{job_id}")[1]["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.05)

    assert attempts["charge"] == 2 and captured.lines  # the retry ran, and there were lines to search
    assert leak_sources(captured.lines) == set()


def test_bridge_crash_log_names_the_path_without_its_query_or_headers(captured: Capture) -> None:
    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("boom")

    with serve(broken, token=TOKEN) as bridge:
        status, _ = request(f"{bridge.url}/jobs/j-1?token={URL_TOKEN}")

    crash = [line for line in captured.lines if "the handler raised" in line]
    assert status == 500 and crash and "/jobs/j-1" in crash[0]
    assert leak_sources(captured.lines) == set()


def test_callback_tokens_reach_no_log_line_in_a_header_in_a_url_or_refused(captured: Capture) -> None:
    import aetheris.handlers.api
    import aetheris.handlers.signals
    import aetheris.handlers.worker  # noqa: F401

    with LocalStack(secrets_app, workers=1, api_token=TOKEN) as stack:
        for logger in (logging.getLogger(n) for n in list(logging.Logger.manager.loggerDict)):
            if captured not in logger.handlers:
                watch(logger, captured)
        api = stack.api_url
        status, started = request(f"{api}/jobs", "POST", {"job_type": "secrets.callback", "input": 1})
        assert status == 201, started
        job_id = started["job_id"]
        deadline = time.monotonic() + 30
        while request(f"{api}/jobs/{job_id}")[1]["status"] != "WAITING":
            assert time.monotonic() < deadline
            time.sleep(0.05)  # polling over HTTP; the deadline bounds it
        token = tokens[-1]
        tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        header = {"authorization": f"Callback {tampered}", "content-type": "application/json"}
        refused = urllib.request.Request(f"{api}/callbacks/succeed", b"{}", header, method="POST")
        try:
            urllib.request.urlopen(refused, timeout=30)
        except urllib.error.HTTPError as error:
            assert error.code == 403
        assert request(f"{api}/callbacks/succeed?token={token}", "POST", {"ok": 1}, token=None)[0] == 202
        assert request(f"{api}/callbacks/succeed?token={token}", "POST", {"ok": 2}, token=None)[0] == 403
        deadline = time.monotonic() + 30
        while request(f"{api}/jobs/{job_id}")[1]["status"] != "COMPLETED":
            assert time.monotonic() < deadline
            time.sleep(0.05)

    secrets = (token, tampered, token.split(".")[3])
    assert captured.lines and any("handed out" in line for line in captured.lines)
    assert [line[:200] for line in captured.lines if any(s in line for s in secrets)] == []
