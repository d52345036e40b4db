"""The ``aetheris`` CLI against a running ``LocalStack``: real HTTP, real SQS polling, real clock.

One ``LocalStack`` (moto server, two worker threads, signal poller, sweeper, HTTP API) serves the
module; its app is a small module written to a temporary directory and hosted by import path, as
``aetheris dev --app`` would. ``main([...])`` runs each command in-process and ``capsys`` reads what
it printed. Signal, cancel and trace routes are exercised only when the API has them.
"""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aetheris_infra.cli import main
from aetheris_infra.local_stack import LocalStack

APP_SOURCE = """
from datetime import timedelta
from typing import Any

from aetheris import App, JobContext, NonRetryableError, StepContext

app = App("cli")


def greet_step(sctx: StepContext, name: str) -> str:
    return f"hello {{name}}"


def shout(sctx: StepContext, text: str) -> str:
    return text.upper()


def refuse(sctx: StepContext, reason: str) -> None:
    raise NonRetryableError(reason)


@app.job("cli.greet")
def greet(ctx: JobContext, name: str) -> str:
    text = ctx.step(greet_step, name, name="{first_step}")
    return ctx.step(shout, text)


@app.job("cli.fail")
def fail(ctx: JobContext, reason: str) -> None:
    ctx.step(refuse, reason)


@app.job("cli.approval")
def approval(ctx: JobContext, ticket: str) -> Any:
    return ctx.wait_for_signal("approval", timeout=timedelta(days=1))


@app.job("cli.nap")
def nap(ctx: JobContext, hours: int) -> None:
    ctx.sleep(timedelta(hours=hours))
"""
DEADLINE = 20.0

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``cli_app_v1:app`` (what runs) and ``cli_app_v2:app`` (its first step renamed) on ``sys.path``."""
    directory = tmp_path_factory.mktemp("apps")
    (directory / "cli_app_v1.py").write_text(APP_SOURCE.format(first_step="greet"))
    (directory / "cli_app_v2.py").write_text(APP_SOURCE.format(first_step="salute"))
    sys.path.insert(0, str(directory))
    yield directory
    sys.path.remove(str(directory))
    for name in ("cli_app_v1", "cli_app_v2"):
        sys.modules.pop(name, None)


@pytest.fixture(scope="module")
def stack(apps: Path) -> Iterator[LocalStack]:
    with LocalStack("cli_app_v1:app", workers=2) as running:
        yield running


@pytest.fixture
def run(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> Run:
    """``run("status", job_id)`` → (exit status, stdout, stderr) of ``aetheris --api <stack> ...``."""

    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(["--api", stack.api_url, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def start(run: Run, job_type: str, input: Any) -> str:
    code, out, err = run("--json", "start", job_type, "--input", json.dumps(input))
    assert code == 0, err
    return str(json.loads(out)["job_id"])


def until(run: Run, job_id: str, *statuses: str) -> dict[str, Any]:
    """Poll ``status --json`` until the job is in one of ``statuses``, within the deadline."""
    deadline = time.monotonic() + DEADLINE
    while True:
        code, out, err = run("status", job_id, "--json")
        assert code == 0, err
        job: dict[str, Any] = json.loads(out)
        if job["status"] in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} is still {job['status']}, not {statuses}"
        time.sleep(0.05)  # polling an HTTP API: the deadline, not this pause, bounds the test


def route_missing(code: int, err: str) -> bool:
    return code == 4 and " not_found:" in err


# -- start, status, listings -------------------------------------------------------------------


def test_start_wait_completed_exits_0_and_shows_result(run: Run) -> None:
    code, out, err = run("start", "cli.greet", "--input", '"ada"', "--wait")
    assert code == 0, err
    assert "COMPLETED" in out and "HELLO ADA" in out


def test_start_then_status_reaches_completed(run: Run) -> None:
    code, out, err = run("start", "cli.greet", "--input", '"grace"')
    assert code == 0, err
    assert out.startswith("started job ") and "(PENDING)" in out
    job_id = out.split()[2]
    job = until(run, job_id, "COMPLETED")
    assert job["result"] == "HELLO GRACE"
    code, out, _ = run("status", job_id)
    assert code == 0 and job_id in out and "COMPLETED" in out


def test_start_wait_failed_exits_1(run: Run) -> None:
    code, out, _ = run("start", "cli.fail", "--input", '"no stock"', "--wait")
    assert code == 1
    assert "FAILED" in out and "no stock" in out


def test_start_wait_parked_on_a_signal_exits_5_naming_the_signal(run: Run) -> None:
    code, out, err = run("start", "cli.approval", "--input", '"t-9"', "--wait", "--timeout", str(DEADLINE))

    assert code == 5, err
    assert "WAITING" in out
    assert "WAITING for signal 'approval'" in err and "aetheris signal" in err


def test_status_wait_past_timeout_exits_5_saying_it_gave_up(run: Run) -> None:
    job_id = start(run, "cli.nap", 2)
    until(run, job_id, "SLEEPING")

    code, out, err = run("status", job_id, "--wait", "--timeout", "0.2")

    assert code == 5
    assert "SLEEPING" in out
    assert "gave up waiting after 0.2 s" in err and "still SLEEPING" in err


def test_status_wait_completed_exits_0(run: Run) -> None:
    job_id = start(run, "cli.greet", "uma")

    code, out, err = run("status", job_id, "--wait", "--timeout", str(DEADLINE))

    assert code == 0, err
    assert "COMPLETED" in out and "HELLO UMA" in out


def test_start_same_idempotency_key_answers_the_same_job(run: Run) -> None:
    first = run("--json", "start", "cli.greet", "--input", '"lin"', "--idempotency-key", "cli-k1")
    again = run("start", "cli.greet", "--input", '"lin"', "--idempotency-key", "cli-k1")
    job_id = json.loads(first[1])["job_id"]
    assert again[0] == 0 and job_id in again[1] and "already started" in again[1]


def test_jobs_lists_a_started_job_as_table_and_json(run: Run) -> None:
    job_id = start(run, "cli.greet", "bo")
    until(run, job_id, "COMPLETED")
    code, out, _ = run("jobs", "--limit", "100")
    assert code == 0 and job_id in out
    code, out, _ = run("jobs", "--status", "completed", "--json")
    page = json.loads(out)
    assert code == 0 and set(page) == {"jobs", "next_cursor"}
    assert job_id in [job["job_id"] for job in page["jobs"]]
    assert {job["status"] for job in page["jobs"]} == {"COMPLETED"}


def test_events_show_the_log_in_order(run: Run) -> None:
    job_id = start(run, "cli.greet", "cy")
    until(run, job_id, "COMPLETED")
    code, out, _ = run("--json", "events", job_id)
    types = [event["type"] for event in json.loads(out)["events"]]
    assert code == 0
    assert types == ["JobCreated", "StepCommitted", "StepCommitted", "JobCompleted"]
    code, out, _ = run("events", job_id)
    assert code == 0 and "StepCommitted" in out and "local-worker-" in out


# -- export and replay --------------------------------------------------------------------------


def export(run: Run, job_id: str, path: Path, input: Any) -> None:
    """``export`` needs the input from the API; the CLI says so and takes ``--input`` instead."""
    code, out, err = run("export", job_id, "--out", str(path))
    if code == 4:
        assert "`input`" in err and "--input" in err
        code, out, err = run("export", job_id, "--out", str(path), "--input", json.dumps(input))
    assert code == 0, err
    assert f"wrote {path}" in out


def test_export_then_replay_file_is_consistent(run: Run, tmp_path: Path) -> None:
    job_id = start(run, "cli.greet", "eve")
    until(run, job_id, "COMPLETED")
    path = tmp_path / "greet.json"
    export(run, job_id, path, "eve")
    document = json.loads(path.read_text())
    assert document["format"] == "aetheris.history/1" and document["input"] == "eve"
    assert len(document["events"]) == 4
    code, out, err = run("replay", "--file", str(path), "--app", "cli_app_v1:app")
    assert code == 0, err
    assert "consistent through 3 operations" in out


def test_replay_against_changed_code_exits_1_naming_the_divergence(run: Run, tmp_path: Path) -> None:
    job_id = start(run, "cli.greet", "fay")
    until(run, job_id, "COMPLETED")
    path = tmp_path / "greet.json"
    export(run, job_id, path, "fay")
    code, out, _ = run("replay", "--file", str(path), "--app", "cli_app_v2:app")
    assert code == 1
    assert "divergent at operation 0" in out
    assert "- step 'greet'" in out and "+ step 'salute'" in out
    code, out, _ = run("--json", "replay", "--file", str(path), "--app", "cli_app_v2:app")
    report = json.loads(out)
    assert code == 1 and report["consistent"] is False
    assert report["divergence"]["position"] == 0 and "salute" in report["divergence"]["requested"]


def test_replay_by_id_reads_the_history_from_the_api(run: Run) -> None:
    job_id = start(run, "cli.greet", "gus")
    until(run, job_id, "COMPLETED")
    code, out, err = run("replay", job_id, "--app", "cli_app_v1:app", "--input", '"gus"')
    assert code == 0, err
    assert "consistent through 3 operations" in out


def test_replay_without_id_or_file_is_a_usage_error(run: Run) -> None:
    code, _, err = run("replay")
    assert code == 2 and "--file" in err


# -- errors ---------------------------------------------------------------------------------------


def test_unreachable_api_exits_3_naming_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--api", "http://127.0.0.1:9", "status", "some-job"])
    err = capsys.readouterr().err
    assert code == 3
    assert "http://127.0.0.1:9" in err and "aetheris dev" in err


def test_unknown_job_exits_4_with_the_api_error_code(run: Run) -> None:
    code, _, err = run("status", "no-such-job")
    assert code == 4 and "job_not_found" in err


def test_unknown_job_type_exits_4(run: Run) -> None:
    code, _, err = run("start", "cli.nope", "--input", "null")
    assert code == 4 and "unknown_job_type" in err


def test_input_that_is_not_json_is_a_usage_error(run: Run) -> None:
    code, _, err = run("start", "cli.greet", "--input", "{ada")
    assert code == 2 and "--input must be JSON" in err


# -- signal, cancel, trace (when the API has these routes) ----------------------------------------


def test_signal_wakes_a_waiting_job(run: Run) -> None:
    job_id = start(run, "cli.approval", "t-1")
    until(run, job_id, "WAITING")
    code, out, err = run(
        "signal", job_id, "approval", "--payload", '{"approved": true}', "--signal-id", "s-1"
    )
    if route_missing(code, err):
        pytest.skip("the API has no POST /jobs/{id}/signals/{name} yet")
    assert code == 0, err
    assert "s-1" in out
    assert until(run, job_id, "COMPLETED")["result"] == {"approved": True}


def test_cancel_stops_a_waiting_job(run: Run) -> None:
    job_id = start(run, "cli.approval", "t-2")
    until(run, job_id, "WAITING")
    code, out, err = run("cancel", job_id)
    if route_missing(code, err):
        pytest.skip("the API has no POST /jobs/{id}/cancel yet")
    assert code == 0, err
    assert job_id in out
    until(run, job_id, "CANCELLED")


def test_trace_renders_the_trace_or_a_timeline(run: Run) -> None:
    job_id = start(run, "cli.greet", "hal")
    until(run, job_id, "COMPLETED")
    code, out, err = run("trace", job_id)
    assert code == 0, err
    assert "greet" in out and "shout" in out
    code, out, err = run("trace", job_id, "--json")
    assert code == 0, err
    assert json.loads(out)


def test_trace_of_unknown_job_exits_4(run: Run) -> None:
    code, _, err = run("trace", "no-such-job")
    assert code == 4 and "job_not_found" in err


# -- aetheris dev ---------------------------------------------------------------------------------


def test_dev_serves_the_api_and_stops_cleanly_on_sigterm() -> None:
    command = [sys.executable, "-m", "aetheris_infra.cli", "--json", "dev", "--port", "0", "--workers", "1"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True)
    reader.start()
    try:
        ready = json.loads(lines.get(timeout=DEADLINE))
        with urllib.request.urlopen(f"{ready['api_url']}/jobs", timeout=10) as response:
            assert response.status == 200 and json.loads(response.read())["jobs"] == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=DEADLINE) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
