"""Access to the local API: with ``$AETHERIS_API_TOKEN`` set, the HTTP bridge (what ``aetheris dev``
serves) answers only requests that carry it as a bearer token, and the CLI sends it.

The deployed API's auth (SigV4 or a JWT authorizer on every route) is API Gateway's: its template
is checked in ``tests/infra/test_template.py`` and ``tests/infra/test_sam.py``.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from typing import Any

import pytest

from aetheris_infra.cli import main
from aetheris_infra.http_bridge import serve

TOKEN = "local-token-4f1c9a"
DEADLINE = 30.0


class Recorder:
    """A handler that answers an empty job page and remembers every event it was given."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        body = json.dumps({"jobs": [], "next_cursor": None})
        return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": body}


def get(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], Any]:
    headers = {} if authorization is None else {"Authorization": authorization}
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers.items()), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers.items()), json.loads(error.read())


@pytest.mark.parametrize("authorization", [None, "", "Bearer", "Basic bG9jYWw6dG9rZW4=", f"Bearer {TOKEN}x"])
def test_bridge_with_token_request_without_it_answers_401_and_never_calls_the_handler(
    authorization: str | None,
) -> None:
    handler = Recorder()

    with serve(handler, token=TOKEN) as bridge:
        status, headers, body = get(bridge.url + "/jobs", authorization)

    assert status == 401
    assert body["error"]["code"] == "unauthorized"
    assert "Authorization: Bearer" in body["error"]["message"]
    assert TOKEN not in json.dumps(body)
    assert headers["www-authenticate"].startswith("Bearer")
    assert handler.events == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bridge_with_token_request_with_it_reaches_the_handler(scheme: str) -> None:
    handler = Recorder()

    with serve(handler, token=TOKEN) as bridge:
        status, _, body = get(bridge.url + "/jobs", f"{scheme} {TOKEN}")

    assert (status, body) == (200, {"jobs": [], "next_cursor": None})
    assert len(handler.events) == 1


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/callbacks/succeed"),
        ("POST", "/callbacks/fail"),
        ("GET", "/ui"),
        ("GET", "/ui/callback.html"),
    ],
)
def test_bridge_with_token_lets_the_routes_the_template_leaves_open_through_without_it(
    method: str, path: str
) -> None:
    handler = Recorder()

    with serve(handler, token=TOKEN) as bridge:
        request = urllib.request.Request(
            bridge.url + path, data=b"{}" if method == "POST" else None, method=method
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            status = response.status

    assert status == 200 and len(handler.events) == 1


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/callbacks/succeed"), ("POST", "/ui"), ("GET", "/ui/a/b")]
)
def test_bridge_with_token_keeps_other_methods_and_paths_near_the_open_ones_closed(
    method: str, path: str
) -> None:
    handler = Recorder()

    with serve(handler, token=TOKEN) as bridge:
        request = urllib.request.Request(
            bridge.url + path, data=b"{}" if method == "POST" else None, method=method
        )
        try:
            urllib.request.urlopen(request, timeout=10)
            status = 200
        except urllib.error.HTTPError as error:
            status = error.code

    assert status == 401 and handler.events == []


def test_bridge_with_an_empty_token_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        serve(Recorder(), token=" ")


def test_cli_sends_the_token_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    handler = Recorder()

    with serve(handler, token=TOKEN) as bridge:
        refused = main(["--api", bridge.url, "jobs"])
        refused_err = capsys.readouterr().err
        by_option = main(["--api", bridge.url, "jobs", "--token", TOKEN])
        monkeypatch.setenv("AETHERIS_API_TOKEN", TOKEN)
        by_environment = main(["--api", bridge.url, "--json", "jobs"])

    assert refused == 4 and "401 unauthorized" in refused_err
    assert (by_option, by_environment) == (0, 0)
    assert [e["headers"]["authorization"] for e in handler.events] == [f"Bearer {TOKEN}"] * 2


def test_cli_sigv4_signs_every_request_for_an_iam_stack(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
    handler = Recorder()

    with serve(handler) as bridge:
        code = main(["--api", bridge.url, "--sigv4", "jobs"])

    (event,) = handler.events
    assert code == 0, capsys.readouterr().err
    assert event["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/execute-api/aws4_request" in event["headers"]["authorization"]
    assert "x-amz-date" in event["headers"]


def test_dev_with_token_requires_it_and_says_how_to_send_it_without_printing_it() -> None:
    command = [sys.executable, "-m", "aetheris_infra.cli", "dev", "--port", "0", "--workers", "1"]
    env = {**os.environ, "AETHERIS_API_TOKEN": TOKEN, "COLUMNS": "400"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True)
    reader.start()
    try:
        printed = [lines.get(timeout=DEADLINE)]
        while "Ctrl-C" not in printed[-1]:
            printed.append(lines.get(timeout=DEADLINE))
        text = "".join(printed)
        url = next(word for word in text.split() if word.startswith("http://"))
        assert "Authorization: Bearer $AETHERIS_API_TOKEN" in text and TOKEN not in text
        assert get(url + "/jobs")[0] == 401
        assert get(url + "/jobs", f"Bearer {TOKEN}")[:1] == (200,)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
