"""``aetheris summary`` and ``aetheris stuck`` against a running ``LocalStack`` (real HTTP through the
bridge, real SQS polling, the real clock), as ``test_cli.py`` runs the other commands.

A dead-lettered tick is put on the step DLQ by hand: on the real clock a tick reaches it only after
ten visibility timeouts (an hour), which ``test_observability.py`` covers on the fake clock.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aetheris_infra.cli import main
from aetheris_infra.local_stack import LocalStack

APP_SOURCE = """
from typing import Any

from aetheris import App, JobContext, StepContext

app = App("cli-ops")


def greet_step(sctx: StepContext, name: str) -> str:
    return f"hello {name}"


@app.job("ops.greet")
def greet(ctx: JobContext, name: str) -> str:
    return ctx.step(greet_step, name)


@app.job("ops.approval")
def approval(ctx: JobContext, ticket: str) -> Any:
    return ctx.wait_for_signal("approval")
"""
DEADLINE = 20.0

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    directory = tmp_path_factory.mktemp("ops_apps")
    (directory / "cli_ops_app.py").write_text(APP_SOURCE)
    sys.path.insert(0, str(directory))
    try:
        with LocalStack("cli_ops_app:app", workers=1) as running:
            yield running
    finally:
        sys.path.remove(str(directory))
        sys.modules.pop("cli_ops_app", None)


@pytest.fixture
def run(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> Run:
    def invoke(*argv: str) -> tuple[int, str, str]:
        code = main(["--api", stack.api_url, *argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return invoke


def start(run: Run, job_type: str, input: Any) -> str:
    code, out, err = run("--json", "start", job_type, "--input", json.dumps(input))
    assert code == 0, err
    return str(json.loads(out)["job_id"])


def until(run: Run, job_id: str, status: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while True:
        code, out, err = run("status", job_id, "--json")
        assert code == 0, err
        if json.loads(out)["status"] == status:
            return
        assert time.monotonic() < deadline, f"job {job_id} never reached {status}"
        time.sleep(0.05)  # polling an HTTP API: the deadline, not this pause, bounds the test


def test_cli_summary_shows_counts_queues_and_stuck_as_table_and_json(run: Run) -> None:
    done = start(run, "ops.greet", "ada")
    waiting = start(run, "ops.approval", "t-1")
    until(run, done, "COMPLETED")
    until(run, waiting, "WAITING")

    code, out, err = run("summary")
    json_code, json_out, _ = run("summary", "--json")
    summary = json.loads(json_out)

    assert code == 0, err
    assert "WAITING" in out and "COMPLETED" in out and "step_dlq" in out and "stuck jobs: 0" in out
    assert json_code == 0
    assert summary["jobs"]["WAITING"] >= 1 and summary["finished_last_hour"]["COMPLETED"] >= 1
    assert set(summary["queues"]) == {"step", "step_dlq", "signal", "signal_dlq"}


def test_cli_stuck_lists_a_dead_lettered_job_with_its_reason_and_full_id(run: Run, stack: LocalStack) -> None:
    job_id = start(run, "ops.approval", "t-2")
    until(run, job_id, "WAITING")
    code, out, _ = run("stuck")
    assert code == 0 and job_id not in out, "parked on a signal: not stuck"

    sqs = stack.runtimes[0].services.queue.client
    assert stack.resources is not None
    body = json.dumps({"job_id": job_id, "seq": 2})
    sqs.send_message(QueueUrl=stack.resources.step_dlq_url, MessageBody=body)
    code, out, err = run("stuck")
    json_code, json_out, _ = run("stuck", "--json", "--threshold", "0")
    summary_code, summary_out, _ = run("summary")

    assert code == 0, err
    assert job_id in out and "dead_lettered" in out and "1 dead letter(s)" in out, out
    report = json.loads(json_out)
    assert json_code == 0 and report["threshold_seconds"] == 0
    assert [(j["job_id"], j["reason"]) for j in report["jobs"]] == [(job_id, "dead_lettered")]
    assert summary_code == 0 and "stuck jobs: 1" in summary_out


def test_cli_stuck_bad_threshold_exits_4_with_the_api_error(run: Run) -> None:
    code, _, err = run("stuck", "--threshold", "-5")

    assert code == 4 and "invalid_parameter" in err


def test_cli_help_lists_summary_and_stuck(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--help"])
    out = capsys.readouterr().out

    assert code == 0 and "summary" in out and "stuck" in out


def test_cli_stuck_unreachable_api_exits_3(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["--api", "http://127.0.0.1:9", "stuck"])

    assert code == 3 and "http://127.0.0.1:9" in capsys.readouterr().err
