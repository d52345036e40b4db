"""``aetheris``: run the local stack, and start, inspect, signal, export and replay jobs over the HTTP API.

Every command except ``dev`` and ``replay --file`` talks to the HTTP API at ``--api`` (default
``$AETHERIS_API``, else the ``aetheris dev`` address), so the same commands work against a deployed
stack. ``--json`` prints the API's JSON instead of tables (before or after the command name).

``export`` needs the job's input, which it reads from the ``input`` field of ``GET /jobs/{id}``;
an API that does not return it is answered with exit status 4, unless ``--input`` supplies the
input the job was started with. ``replay ID`` exports the same way and replays in this process.

Exit status: 0 done; 1 the job or history asked about is bad (``replay`` found a divergence,
``--wait`` saw the job end ``FAILED`` or ``CANCELLED``); 2 usage (a bad argument, an app that cannot
be imported); 3 the API cannot be reached; 4 the API answered with an error; 5 ``--wait`` gave up
on a job that is still running: ``--timeout`` passed, or (``start --wait``) the job parked on a
signal, which only a signal moves. Either way it says which on stderr; ``status ID --wait`` then
waits for the end (a job just signalled may still show ``WAITING`` for a moment).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, NoReturn

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
    show_events,
    show_job,
    show_jobs,
    show_replay,
    show_stuck,
    show_summary,
    show_trace,
)
from aetheris_infra.cli_wait import wait_and_show

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
    if args.budget:
        body["budget"] = _json_arg(args.budget, "--budget")
    code, started = api.call("POST", "/jobs", body)
    if not args.wait:
        verb = "started" if code == 201 else "already started with this idempotency key:"
        out.emit(started, lambda: out.console.print(f"{verb} job {started['job_id']} ({started['status']})"))
        return EXIT_OK
    if not out.json:
        out.console.print(f"job {started['job_id']} started; waiting for it to finish…")
    return wait_and_show(api, out, started["job_id"], args.timeout, until_parked=True)


def cmd_fork(args: argparse.Namespace, api: Api, out: Out) -> int:
    return _forked(args, api, out, {"at_seq": args.at}, f"forked job {args.id} at seq {args.at}")


def cmd_retry(args: argparse.Namespace, api: Api, out: Out) -> int:
    return _forked(args, api, out, {}, f"retrying job {args.id} from its failed operation")


def _forked(args: argparse.Namespace, api: Api, out: Out, body: dict[str, Any], what: str) -> int:
    """``POST /jobs/{id}/fork``; prints the new job's id (``fork`` and ``retry`` both start one)."""
    if args.idempotency_key:
        body["idempotency_key"] = args.idempotency_key
    if args.budget:
        body["budget"] = _json_arg(args.budget, "--budget")
    _, started = api.call("POST", job_path(args.id, "fork"), body)
    out.emit(started, lambda: out.console.print(f"{what}: new job {started['job_id']} ({started['status']})"))
    if not args.wait:
        return EXIT_OK
    return wait_and_show(api, out, started["job_id"], args.timeout, until_parked=True)


def cmd_status(args: argparse.Namespace, api: Api, out: Out) -> int:
    if args.wait:  # after a signal the job may still show WAITING for a moment: wait for the end
        return wait_and_show(api, out, args.id, args.timeout, until_parked=False)
    job = api.get(job_path(args.id))
    out.emit(job, lambda: show_job(out, job))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, api: Api, out: Out) -> int:
    page = api.get("/jobs", status=args.status, limit=args.limit, cursor=args.cursor)
    more = None
    if page.get("next_cursor"):
        options = (f"--status {args.status} " if args.status else "") + f"--limit {args.limit} "
        more = f"aetheris jobs {options}--cursor {page['next_cursor']}"
    out.emit(page, lambda: show_jobs(out, page, more))
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
    out.emit(summary, lambda: show_summary(out, summary))
    return EXIT_OK


def cmd_stuck(args: argparse.Namespace, api: Api, out: Out) -> int:
    report = api.get("/observability/stuck", threshold_seconds=args.threshold)
    out.emit(report, lambda: show_stuck(out, report))
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
    from aetheris_infra.dev_logs import use_readable_logs

    use_readable_logs()  # text with each line's job, seq, attempt, fence, worker; JSON is for Lambda
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


def cmd_init(args: argparse.Namespace, api: Api, out: Out) -> int:
    from aetheris_infra.scaffold import InitError, scaffold

    try:
        project = scaffold(args.dir, args.package, force=args.force)
    except InitError as error:
        raise UsageError(str(error)) from None
    data = {
        "directory": str(project.directory),
        "package": project.package,
        "app": project.app,
        "files": [str(path.relative_to(project.directory)) for path in project.files],
    }

    def render() -> None:
        out.console.print(f"created {project.directory} (App {project.app}):")
        for name in data["files"]:
            out.console.print(f"  {name}")
        out.console.print(f"next: cd {project.directory} && make test   (then make dev, make deploy)")

    out.emit(data, render)
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
    parser = _Parser(
        prog="aetheris",
        description="Aetheris: durable jobs for AI agents. Exit status: 0 ok, 1 the job or history is bad, "
        "2 usage, 3 API unreachable, 4 API error, 5 --wait gave up on a job still running.",
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
    common = _Parser(add_help=False)  # the same options after the command name
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
    wait_help = "wait for the end: exit 0 COMPLETED, 1 FAILED/CANCELLED, 5 still running after --timeout"
    start.add_argument(
        "--wait", action="store_true", help=wait_help.replace("the end", "the end or a signal wait (exit 5)")
    )
    start.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits at most")
    budget_help = "limits for this job as JSON, e.g. '{\"max_tokens\": 20000}' (replaces its type's Budget)"
    start.add_argument("--budget", help=budget_help)
    for name, run, text in (
        ("fork", cmd_fork, "start a new job from a job's log up to --at SEQ, on today's code (time travel)"),
        ("retry", cmd_retry, "start a new job that runs a FAILED/CANCELLED job again from its failed step"),
    ):
        sub = command(name, run, text)
        sub.add_argument("id", metavar="ID")
        if name == "fork":
            sub.add_argument("--at", type=int, required=True, metavar="SEQ", help="the last seq to copy")
        sub.add_argument("--idempotency-key", help="the same key returns the same new job")
        sub.add_argument("--budget", help="limits for the new job as JSON (default: the old job's)")
        sub.add_argument(
            "--wait", action="store_true", help=wait_help.replace("the end", "the new job's end")
        )
        sub.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits at most")
    status = command("status", cmd_status, "a job's status, progress, result or error")
    status.add_argument("id", metavar="ID")
    status.add_argument("--wait", action="store_true", help=wait_help)
    status.add_argument("--timeout", type=float, default=300.0, help="seconds --wait waits at most")
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
    stuck = command("stuck", cmd_stuck, "jobs that are not moving, with the reason and the evidence")
    stuck.add_argument("--threshold", type=float, help="seconds stuck at least (default: the stall window)")
    export = command("export", cmd_export, "write a job's history (job, input, events) as JSON")
    export.add_argument("id", metavar="ID")
    export.add_argument("--out", type=Path, help="file to write (default: stdout)")
    export.add_argument("--input", help="the job's input (JSON or @file) if the API does not return it")
    replay = command("replay", cmd_replay, "replay a recorded job against today's code, without side effects")
    replay.add_argument("id", metavar="ID", nargs="?")
    replay.add_argument("--file", type=Path, help="a history written by `aetheris export`")
    replay.add_argument("--app", default=default_app, help=app_help)
    replay.add_argument("--input", help="the job's input, for an API that does not return it")
    init = command("init", cmd_init, "scaffold a project of your own: jobs, tests, Makefile, SAM template")
    init.add_argument("dir", metavar="DIR", type=Path)
    init.add_argument("--package", help="the Python package to create (default: from DIR's name)")
    init.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    return parser


class _Parser(argparse.ArgumentParser):
    """Usage errors are raised (and shown in ``main``, as JSON with ``--json``), not printed here."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    wide = None if sys.stdout.isatty() else 160
    errors = Console(stderr=True, width=wide, highlight=False)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # argparse's own --help (0), already printed
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    except UsageError as error:
        return _fail(error, "--json" in argv, errors)
    out = Out(args.json, Console(width=wide, highlight=False), errors)
    try:
        run: Command = args.run
        return run(args, Api(args.api, token=args.token, sigv4=args.sigv4), out)
    except CliError as error:
        return _fail(error, out.json, errors)


def _fail(error: CliError, as_json: bool, errors: Console) -> int:
    """Report ``error`` on stderr — as ``{"error": {"code", "message", "exit_status"}}`` with ``--json``
    (the API's error shape, plus its HTTP status when it answered) — and return its exit status."""
    if not as_json:
        errors.print(Text(f"error: {error}", style="red"))
        return error.exit_code
    detail: dict[str, Any] = {"code": _code(error), "message": str(error), "exit_status": error.exit_code}
    if isinstance(error, ApiError):
        detail |= {"code": error.code, "message": error.message, "http_status": error.status}
    sys.stderr.write(json.dumps({"error": detail}) + "\n")
    return error.exit_code


def _code(error: CliError) -> str:
    """``usage``, ``unreachable``, ``missing_input``: the class name in snake case."""
    names = {"UsageError": "usage", "Unreachable": "unreachable", "MissingInput": "missing_input"}
    return names.get(type(error).__name__, "error")


if __name__ == "__main__":
    raise SystemExit(main())
