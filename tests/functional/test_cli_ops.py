"""The CLI as an SRE uses it: ``trace`` prints the UI's timeline (a crash and its takeover), ``jobs``
keeps job ids whole at 80 columns and its "more" hint keeps the filters, and ``--json`` errors are
JSON. Against the module's ``LocalStack`` (see test_cli.py) or a ``LocalRuntime`` for the crash."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from aetheris.testing import LocalRuntime
from aetheris.trace import load_trace
from aetheris_infra.cli import main
from aetheris_infra.cli_render import Out, show_jobs, show_trace
from aetheris_infra.cli_timeline import timeline_rows
from tests.functional.jobs import Calls
from tests.functional.test_cli import Run, apps, run, stack, start, until  # noqa: F401 - fixtures
from tests.functional.test_trace_ops import order_app, rejected_order


def rendered(width: int) -> tuple[Out, io.StringIO]:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, highlight=False, color_system=None)
    return Out(False, console, console), buffer


def test_cli_trace_prints_the_crashed_attempt_its_takeover_and_the_retry_backoff() -> None:
    with LocalRuntime(order_app(Calls())) as local:
        trace = load_trace(local.runtimes[0], rejected_order(local))
    assert trace is not None
    document = trace.model_dump(mode="json")
    out, buffer = rendered(220)

    show_trace(out, document)
    text = buffer.getvalue()

    charge = trace.operations[1]
    crashed, taken = charge.attempts
    assert f"crashed: lease expired, taken over by {taken.worker_id}" in text
    assert f"took over from {crashed.worker_id}" in text
    rows = [r for r in timeline_rows(document, trace.updated_at) if r.op == 1]
    assert [(r.outcome, r.worker, r.fence) for r in rows] == [
        ("crashed", crashed.worker_id, 1),
        ("committed", taken.worker_id, 2),
    ]
    # The takeover commit keeps the dead claim's claimed_at (reclaimed_claimed_at): its start is drawn.
    assert rows[0].start_known is True
    notify = [r for r in timeline_rows(document, trace.updated_at) if r.op == 2]
    assert [r.outcome for r in notify] == ["failed", "committed"] and notify[0].backoff_until is not None
    assert "released by signal appr-1" in text and "undo-reserve" in text


def test_cli_jobs_table_at_80_columns_never_cuts_a_job_id() -> None:
    ids = [f"{n:08d}-0000-4000-8000-00000000000{n}" for n in range(3)]
    page = {
        "jobs": [
            {
                "job_id": job_id,
                "job_type": "support.refund.with.a.very.long.type.name",
                "version": "12",
                "status": "COMPENSATING",
                "created_at": "2026-12-01T09:00:00.123456+00:00",
                "updated_at": "2026-12-01T09:05:00.123456+00:00",
            }
            for job_id in ids
        ],
        "next_cursor": None,
    }
    out, buffer = rendered(80)

    show_jobs(out, page, None)

    lines = buffer.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines)
    for job_id in ids:
        assert any(job_id in line for line in lines), buffer.getvalue()


def test_cli_jobs_more_hint_keeps_status_and_limit(run: Run) -> None:  # noqa: F811 - the fixture
    for name in ("ann", "ben", "cat"):  # three jobs: two pages of one, then a third
        until(run, start(run, "cli.greet", name), "COMPLETED")

    code, out, err = run("jobs", "--status", "completed", "--limit", "1")

    assert code == 0, err
    (hint,) = [line for line in out.splitlines() if line.startswith("more: ")]
    command = hint.removeprefix("more: aetheris ").split()
    assert command[:5] == ["jobs", "--status", "COMPLETED", "--limit", "1"] and command[5] == "--cursor"
    code, out, err = run(*command)
    assert code == 0 and "more: aetheris jobs --status COMPLETED --limit 1 --cursor" in out


def json_error(err: str) -> dict[str, object]:
    document = json.loads(err)
    assert set(document) == {"error"}
    error: dict[str, object] = document["error"]
    return error


def test_cli_json_error_from_the_api_is_json_with_its_code_and_status(run: Run) -> None:  # noqa: F811
    code, out, err = run("--json", "status", "no-such-job")

    assert (code, out) == (4, "")
    error = json_error(err)
    assert (error["code"], error["http_status"], error["exit_status"]) == ("job_not_found", 404, 4)


def test_cli_json_usage_and_unreachable_errors_are_json(capsys: pytest.CaptureFixture[str]) -> None:
    usage = main(["--json", "jobs", "--limit", "many"])
    usage_err = capsys.readouterr().err
    unreachable = main(["--api", "http://127.0.0.1:9", "jobs", "--json"])
    unreachable_err = capsys.readouterr().err

    assert usage == 2 and json_error(usage_err)["code"] == "usage"
    assert "--limit" in str(json_error(usage_err)["message"])
    assert unreachable == 3 and json_error(unreachable_err)["code"] == "unreachable"
