"""``aetheris``: run the local stack, and start, inspect, signal, export and replay jobs over the HTTP API.

Every command except ``dev`` and ``replay --file`` talks to the HTTP API at ``--api`` (default
``$AETHERIS_API``, else the ``aetheris dev`` address), so the same commands work against a deployed
stack. ``--json`` prints the API's JSON instead of tables (before or after the command name).

``export`` needs the job's input, which it reads from the ``input`` field of ``GET /jobs/{id}``;
an API that does not return it is answered with exit status 4, unless ``--input`` supplies the
input the job was started with. ``replay ID`` exports the same way and replays in this process.

Exit status: 0 done; 1 the job or history asked about is bad (``replay`` found a divergence,
``start --wait`` ended ``FAILED`` or ``CANCELLED`` or timed out); 2 usage (a bad argument, an app
that cannot be imported); 3 the API cannot be reached; 4 the API answered with an error.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from aetheris.errors import AetherisError
from aetheris.events import Event, JobStatus
from aetheris.history import JobHistory
from aetheris.runtime import JobView
from aetheris_infra.cli_api import (
    EXIT_BAD,
    EXIT_OK,
    EXIT_USAGE,
    Api,
    ApiError,
    CliError,
    MissingInput,
    UsageError,
    job_path,
)
from aetheris_infra.cli_render import (
    Out,
    cell,
    show_any,
    show_events,
    show_job,
    show_replay,
    show_trace,
    status_cell,
    table_of,
    when,
)

DEFAULT_PORT: Final = 8765
DEFAULT_API: Final = f"http://127.0.0.1:{DEFAULT_PORT}"


def _json_arg(text: str, option: str) -> Any:
    """A JSON argument, or ``@path`` to read it from a file."""
    try:
        source = Path(text[1:]).read_text() if text.startswith("@") else text
        return json.loads(source)
    except (OSError, ValueError) as error:
        raise UsageError(f"{option} must be JSON (or @file with JSON): {error}") from None


def cmd_start(args: argparse.Namespace, api: Api, out: Out) -> int:
    body = {"job_type": args.type, "input": _json_arg(args.input, "--input")}
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    code, started = api.call("POST", "/jobs", body)
    if not args.wait:
        verb = "started" if code == 201 else "already started with this idempotency key:"
        out.emit(started, lambda: out.console.print(f"{verb} job {started['job_id']} ({started['status']})"))
        return EXIT_OK
    if not out.json:
        out.console.print(f"job {started['job_id']} started; waiting for it to finish…")
    job = _wait(api, started["job_id"], args.timeout)
    out.emit(job, lambda: show_job(out, job))
    if not JobStatus(job["status"]).is_terminal:
        out.errors.print(f"job {job['job_id']} is still {job['status']} after {args.timeout:g} s")
    return EXIT_OK if job["status"] == JobStatus.COMPLETED else EXIT_BAD


def _wait(api: Api, job_id: str, timeout: float) -> dict[str, Any]:
    deadline, pause = time.monotonic() + timeout, 0.05
    while True:
        job: dict[str, Any] = api.get(job_path(job_id))
        if JobStatus(job["status"]).is_terminal or time.monotonic() >= deadline:
            return job
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(1.0, pause * 2)


def cmd_status(args: argparse.Namespace, api: Api, out: Out) -> int:
    job = api.get(job_path(args.id))
    out.emit(job, lambda: show_job(out, job))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, api: Api, out: Out) -> int:
    page = api.get("/jobs", status=args.status, limit=args.limit, cursor=args.cursor)

    def render() -> None:
        table = table_of(
            "Jobs, newest change first", "job", "type", "version", "status", "created", "updated"
        )
        for job in page["jobs"]:
            row = (job["job_id"], job["job_type"], job["version"])
            table.add_row(
                *map(cell, row), status_cell(job["status"]), when(job["created_at"]), when(job["updated_at"])
            )
        out.console.print(table)
        if page.get("next_cursor"):
            out.console.print(f"more: aetheris jobs --cursor {page['next_cursor']}")

    out.emit(page, render)
    return EXIT_OK


def cmd_events(args: argparse.Namespace, api: Api, out: Out) -> int:
    events = api.pages(job_path(args.id, "events"), "events")
    out.emit(
        {"events": events, "next_cursor": None}, lambda: show_events(out, events, f"Events of {args.id}")
    )
    return EXIT_OK


def cmd_signal(args: argparse.Namespace, api: Api, out: Out) -> int:
    body = {"payload": _json_arg(args.payload, "--payload")}
    if args.signal_id:
        body["signal_id"] = args.signal_id
    _, sent = api.call("POST", job_path(args.id, "signals", args.name), body)
    out.emit(
        sent, lambda: out.console.print(f"signal {args.name} accepted for job {args.id}: {sent['signal_id']}")
    )
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, api: Api, out: Out) -> int:
    _, answer = api.call("POST", job_path(args.id, "cancel"))
    status = answer.get("status", "?") if isinstance(answer, dict) else "?"
    out.emit(answer, lambda: out.console.print(f"cancel requested for job {args.id} (status {status})"))
    return EXIT_OK


def cmd_trace(args: argparse.Namespace, api: Api, out: Out) -> int:
    try:
        trace = api.get(job_path(args.id, "trace"))
    except ApiError as error:
        if error.code != "not_found":  # not_found is the missing route; job_not_found is an answer
            raise
        events = api.pages(job_path(args.id, "events"), "events")
        title = f"Timeline of {args.id} (this API has no /trace: read from the events)"
        out.emit({"events": events, "next_cursor": None}, lambda: show_events(out, events, title))
        return EXIT_OK
    out.emit(trace, lambda: show_trace(out, trace))
    return EXIT_OK


def cmd_summary(args: argparse.Namespace, api: Api, out: Out) -> int:
    summary = api.get("/observability/summary")
    out.emit(summary, lambda: show_any(out, summary, "Summary"))
    return EXIT_OK


def export_history(api: Api, job_id: str, input_arg: str | None) -> JobHistory:
    job = api.get(job_path(job_id))
    given = None if input_arg is None else _json_arg(input_arg, "--input")
    if "input" not in job and input_arg is None:
        raise MissingInput(
            f"GET /jobs/{job_id} at {api.url} does not return the job's `input`, which a history needs; "
            "pass the input the job was started with as --input JSON (or @file)"
        )
    if "input" in job and input_arg is not None and job["input"] != given:
        raise UsageError(f"--input differs from the input the API recorded for job {job_id}; drop --input")
    events = api.pages(job_path(job_id, "events"), "events")
    try:
        return JobHistory(
            job=JobView.model_validate(job),
            input=job.get("input", given),
            events=[Event.model_validate(event) for event in events],
        )
    except ValidationError as invalid:
        raise ApiError(
            200, "bad_response", f"the job or its events do not read as a history: {invalid}"
        ) from None


def cmd_export(args: argparse.Namespace, api: Api, out: Out) -> int:
    history = export_history(api, args.id, args.input)
    document = history.model_dump(mode="json")
    if args.out is None:
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True) + "\n")
        return EXIT_OK
    history.dump(args.out)
    job = history.job
    summary = f"{job.job_type} v{job.version}, {job.status.value}, {len(history.events)} events"
    out.emit(
        {"file": str(args.out), **document},
        lambda: out.console.print(f"wrote {args.out}: job {job.job_id} ({summary})"),
    )
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, api: Api, out: Out) -> int:
    from aetheris.testing import replay
    from aetheris_infra.local_stack import load_app

    if (args.id is None) == (args.file is None):
        raise UsageError("replay takes a job ID or --file FILE (one of them)")
    if args.file is not None:
        try:
            history = JobHistory.load(args.file)
        except (OSError, ValueError) as error:
            raise UsageError(f"cannot read a history from {args.file}: {error}") from None
    else:
        history = export_history(api, args.id, args.input)
    try:
        app = load_app(args.app)
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        raise UsageError(f"cannot load the app {args.app!r}: {error}") from None
    try:
        report = replay(app, history)
    except AetherisError as error:  # e.g. today's app has no such job type or version
        out.errors.print(Text(f"cannot replay job {history.job.job_id}: {error}", style="red"))
        return EXIT_BAD
    diverged = report.divergence
    data = {
        "job_id": history.job.job_id,
        "consistent": report.consistent,
        "operations": report.operations,
        "reached_end": report.reached_end,
        "output_matches": report.output_matches,
        "divergence": None
        if diverged is None
        else {k: getattr(diverged, k) for k in ("position", "recorded", "requested")}
        | {"message": str(diverged)},
    }
    out.emit(data, lambda: show_replay(out, history, report))
    return EXIT_OK if report.consistent else EXIT_BAD


def cmd_dev(args: argparse.Namespace, api: Api, out: Out) -> int:
    from aetheris_infra.local_stack import LocalStack

    stack = LocalStack(
        args.app, workers=args.workers, host=args.host, port=args.port, api_token=args.token or None
    )
    try:
        stack.start()
    except (ImportError, AttributeError, TypeError, ValueError) as error:
        raise UsageError(f"cannot load the app {args.app!r}: {error}") from None
    except OSError as error:
        out.errors.print(f"cannot start the local stack on {args.host}:{args.port}: {error}")
        return EXIT_BAD
    # Powertools warns on every flush without metrics; locally they are off (see LocalStack).
    warnings.filterwarnings("ignore", message="No application metrics", category=UserWarning)
    stop = threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():  # Ctrl-C and SIGTERM: a clean stop
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda *_: stop.set())
    try:
        ready = {
            "api_url": stack.api_url,
            "endpoint_url": stack.endpoint_url,
            "environment": stack.environment(),
            "requires_token": bool(args.token),
        }
        if out.json:  # one line, once the API answers: what a supervising process waits for
            sys.stdout.write(json.dumps(ready) + "\n")
        else:
            _show_dev(out, stack.api_url, args)
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if not out.json:
        out.console.print("local stack stopped")
    return EXIT_OK


def _show_dev(out: Out, url: str, args: argparse.Namespace) -> None:
    out.console.print(
        f"[bold]Aetheris dev stack[/] up: API on [bold]{url}[/] ({args.app}, {args.workers} workers)"
    )
    if url != DEFAULT_API:
        out.console.print(f"point the CLI at it: export AETHERIS_API={url}")
    if args.token:  # how to send it, never the token itself: a terminal's scrollback is a log too
        out.console.print(
            "every request needs [bold]Authorization: Bearer $AETHERIS_API_TOKEN[/]: the CLI sends it when "
            "AETHERIS_API_TOKEN is set in its shell (or --token); e.g. "
            f'curl -H "Authorization: Bearer $AETHERIS_API_TOKEN" {url}/jobs'
        )
    else:
        out.console.print(
            "the API takes requests from anything on this machine without a token; "
            "set AETHERIS_API_TOKEN (or pass --token) before `aetheris dev` to require one"
        )
    out.console.print("try: aetheris jobs; aetheris start TYPE --input JSON --wait. Ctrl-C stops the stack.")


# -- parsing --------------------------------------------------------------------------------------

Command = Callable[[argparse.Namespace, Api, Out], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aetheris",
        description="Aetheris: durable jobs for AI agents. Exit status: 0 ok, 1 the job or history is bad, "
        "2 usage, 3 API unreachable, 4 API error.",
    )
    api_help = f"the HTTP API (default $AETHERIS_API, else {DEFAULT_API})"
    parser.add_argument("--api", default=os.environ.get("AETHERIS_API", DEFAULT_API), help=api_help)
    parser.add_argument("--json", action="store_true", help="print the API's JSON instead of tables")
    token_help = (
        "bearer token sent with every request, and required by `dev` (default $AETHERIS_API_TOKEN): "
        "the local stack's token, or a JWT for a stack deployed with ApiAuth=JWT"
    )
    parser.add_argument("--token", default=os.environ.get("AETHERIS_API_TOKEN") or None, help=token_help)
    sigv4_help = "sign requests with SigV4 (AWS credentials) for a stack deployed with ApiAuth=AWS_IAM"
    parser.add_argument("--sigv4", action="store_true", help=sigv4_help)
    common = argparse.ArgumentParser(add_help=False)  # the same options after the command name
    common.add_argument("--api", default=argparse.SUPPRESS, help=api_help)
    common.add_argument("--token", default=argparse.SUPPRESS, help=token_help)
    common.add_argument("--sigv4", action="store_true", default=argparse.SUPPRESS, help=sigv4_help)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="machine output")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    app_help = "the App to host, module:attribute (default $AETHERIS_APP, else agents.support:app)"
    default_app = os.environ.get("AETHERIS_APP") or "agents.support:app"
    dev = command("dev", cmd_dev, "run the local stack (moto, workers, sweeper, HTTP API) until Ctrl-C")
    dev.add_argument("--port", type=int, default=DEFAULT_PORT, help="API port (0 picks a free one)")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--workers", type=int, default=2)
    dev.add_argument("--app", default=default_app, help=app_help)
    start = command("start", cmd_start, "start a job")
    start.add_argument("type", metavar="TYPE")
    start.add_argument("--input", required=True, help="the job's input as JSON, or @file")
    start.add_argument("--idempotency-key")
    start.add_argument("--wait", action="store_true", help="wait for the end; exit 1 unless COMPLETED")
    start.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits")
    command("status", cmd_status, "a job's status, progress, result or error").add_argument(
        "id", metavar="ID"
    )
    jobs = command("jobs", cmd_jobs, "list jobs, newest change first")
    jobs.add_argument("--status", type=str.upper, choices=[s.value for s in JobStatus])
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--cursor")
    command("events", cmd_events, "a job's event log").add_argument("id", metavar="ID")
    sig = command("signal", cmd_signal, "send a signal to a job")
    sig.add_argument("id", metavar="ID")
    sig.add_argument("name", metavar="NAME")
    sig.add_argument("--payload", default="null", help="JSON, or @file")
    sig.add_argument("--signal-id", help="deduplicates retries of the same signal")
    command("cancel", cmd_cancel, "cancel a job").add_argument("id", metavar="ID")
    command("trace", cmd_trace, "a job's trace (its timeline if the API has no trace)").add_argument(
        "id", metavar="ID"
    )
    command("summary", cmd_summary, "counts by status, backlog, stuck jobs")
    export = command("export", cmd_export, "write a job's history (job, input, events) as JSON")
    export.add_argument("id", metavar="ID")
    export.add_argument("--out", type=Path, help="file to write (default: stdout)")
    export.add_argument("--input", help="the job's input (JSON or @file) if the API does not return it")
    replay = command("replay", cmd_replay, "replay a recorded job against today's code, without side effects")
    replay.add_argument("id", metavar="ID", nargs="?")
    replay.add_argument("--file", type=Path, help="a history written by `aetheris export`")
    replay.add_argument("--app", default=default_app, help=app_help)
    replay.add_argument("--input", help="the job's input, for an API that does not return it")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # argparse's own: --help (0) or a usage error (2), already printed
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    wide = None if sys.stdout.isatty() else 160
    out = Out(
        args.json, Console(width=wide, highlight=False), Console(stderr=True, width=wide, highlight=False)
    )
    try:
        run: Command = args.run
        return run(args, Api(args.api, token=args.token, sigv4=args.sigv4), out)
    except CliError as error:
        out.errors.print(Text(f"error: {error}", style="red"))
        return error.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
