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
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlencode

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aetheris.errors import AetherisError
from aetheris.events import Event, JobStatus
from aetheris.history import JobHistory
from aetheris.runtime import JobView

EXIT_OK, EXIT_BAD, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_API_ERROR = 0, 1, 2, 3, 4
DEFAULT_PORT: Final = 8765
DEFAULT_API: Final = f"http://127.0.0.1:{DEFAULT_PORT}"
PAGE: Final = 100
_STYLES: Final = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "magenta", "WAITING": "yellow"}


class CliError(Exception):
    exit_code = EXIT_USAGE


class UsageError(CliError):
    exit_code = EXIT_USAGE


class Unreachable(CliError):
    exit_code = EXIT_UNREACHABLE

    def __init__(self, url: str, reason: object) -> None:
        super().__init__(
            f"cannot reach the Aetheris API at {url} ({reason}). Start a local stack with `aetheris dev`, "
            "or point --api (or AETHERIS_API) at a deployed stack."
        )


class ApiError(CliError):
    exit_code = EXIT_API_ERROR

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status, self.code, self.message = status, code, message
        super().__init__(f"the API answered {status} {code}: {message}")


class MissingInput(CliError):
    """The API's job lacks the ``input`` field a history needs."""

    exit_code = EXIT_API_ERROR


# -- the HTTP API -----------------------------------------------------------------------------


class Api:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout

    def call(self, method: str, path: str, body: Any = None, **query: Any) -> tuple[int, Any]:
        """``(status, JSON body)`` of a 2xx answer; ``ApiError`` for any other, ``Unreachable`` if none."""
        params = {name: value for name, value in query.items() if value is not None}
        url = self.url + path + (f"?{urlencode(params)}" if params else "")
        data = None if body is None else json.dumps(body).encode()
        headers = {"accept": "application/json"} | ({"content-type": "application/json"} if data else {})
        try:
            request = urllib.request.Request(url, data=data, method=method, headers=headers)
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            raise _api_error(error.code, error.read()) from None
        except urllib.error.URLError as error:
            raise Unreachable(self.url, error.reason) from None
        except (OSError, ValueError) as error:  # a reset connection; a URL that is not http(s)
            raise Unreachable(self.url, error) from None
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            raise ApiError(status, "bad_response", f"not JSON: {raw[:200]!r}") from None

    def get(self, path: str, **query: Any) -> Any:
        return self.call("GET", path, **query)[1]

    def pages(self, path: str, key: str) -> list[Any]:
        """Every item of a paginated listing, following ``next_cursor``."""
        items: list[Any] = []
        cursor = None
        while True:
            page = self.get(path, limit=PAGE, cursor=cursor)
            items += page[key]
            cursor = page.get("next_cursor")
            if not cursor:
                return items


def _api_error(status: int, raw: bytes) -> ApiError:
    try:
        body = json.loads(raw)
    except ValueError:
        return ApiError(status, f"http_{status}", raw[:200].decode(errors="replace"))
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return ApiError(status, str(error.get("code")), str(error.get("message")))
    message = body.get("message", body) if isinstance(body, dict) else body  # API Gateway's own answers
    return ApiError(status, f"http_{status}", str(message))


def _job(job_id: str, *rest: str) -> str:
    return "/".join(["/jobs", quote(job_id, safe=""), *(quote(part, safe="") for part in rest)])


# -- output ---------------------------------------------------------------------------------------


@dataclass
class Out:
    json: bool
    console: Console
    errors: Console

    def emit(self, data: Any, render: Callable[[], None]) -> None:
        if self.json:
            sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
        else:
            render()


def _text(value: Any, width: int = 0) -> Text:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return Text(text if not width or len(text) <= width else text[: width - 1] + "…")


def _status(status: Any) -> Text:
    return Text(str(status), style=_STYLES.get(str(status), "cyan"))


def _when(value: Any) -> str:
    return str(value or "").replace("T", " ")[:23]


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(
            column, justify="right" if column in ("seq", "op", "attempt", "fence", "ms") else "left"
        )
    return table


def show_job(out: Out, job: dict[str, Any]) -> None:
    table = Table.grid(padding=(0, 2))
    rows = [
        ("job", job.get("job_id")),
        ("type", f"{job.get('job_type')} v{job.get('version')}"),
        ("status", _status(job.get("status"))),
        ("created", _when(job.get("created_at"))),
        ("updated", _when(job.get("updated_at"))),
        (
            "step",
            f"{job['current_step']} (attempt {job.get('attempt', 0)})" if job.get("current_step") else None,
        ),
        ("last seq", job.get("last_seq")),
        ("waiting for", job.get("waiting_for")),
        ("idempotency key", job.get("idempotency_key")),
    ]
    for name, value in rows:
        if value is not None:
            table.add_row(Text(name, style="bold"), value if isinstance(value, Text) else _text(value))
    out.console.print(table)
    if job.get("error"):
        error = job["error"]
        out.console.print(Text(f"error: {error.get('type')}: {error.get('message')}", style="red"))
    if job.get("result") is not None:
        out.console.print(Text("result:", style="bold"))
        out.console.print_json(data=job["result"])


def show_events(out: Out, events: list[dict[str, Any]], title: str) -> None:
    table = _table(title, "seq", "event", "op", "step", "attempt", "worker", "fence", "at", "ms", "note")
    for event in events:
        table.add_row(
            *(_text(event.get(k)) for k in ("seq", "type", "op", "name", "attempt", "worker_id", "fence")),
            _text(_when(event.get("at"))),
            _text(event.get("duration_ms")),
            _text(_note(event), 70),
        )
    out.console.print(table)


def _note(event: dict[str, Any]) -> str:
    if event.get("reclaimed_from"):
        return f"taken over from {event['reclaimed_from']}"
    if event.get("error"):
        return f"{event['error'].get('type', '').rpartition('.')[2]}: {event['error'].get('message')}"
    return str(event.get("result") or "")


def show_trace(out: Out, trace: dict[str, Any]) -> None:
    """The trace's operations (attempts, workers, timings, outcome) and the effects of its steps."""
    operations = trace.get("operations")
    if not isinstance(operations, list):
        show_any(out, trace, f"Trace of {trace.get('job_id')}")
        return
    header = ("job_id", "job_type", "version", "status", "created_at", "updated_at", "waiting_for", "error")
    show_job(out, {k: v for k, v in trace.items() if k in header})
    table = _table("Operations", "op", "kind", "name", "state", "attempts", "workers", "ms", "detail")
    effects = _table(
        "Effects (tool calls by idempotency key)", "op", "tool", "key", "state", "claims", "worker"
    )
    for op in operations:
        attempts = op.get("attempts") or []
        workers = ", ".join(dict.fromkeys(str(a.get("worker_id")) for a in attempts))
        failed = sum(1 for a in attempts if a.get("outcome") == "failed")
        tries = f"{len(attempts)}" + (f" ({failed} failed)" if failed else "")
        table.add_row(
            *(_text(op.get(k)) for k in ("index", "kind", "name", "state")),
            _text(tries if attempts else ""),
            _text(workers),
            _text(op.get("duration_ms")),
            _text(_op_detail(op), 70),
        )
        for effect in op.get("effects") or []:
            row = (op.get("index"), effect.get("name"), effect.get("idempotency_key"), effect.get("state"))
            effects.add_row(
                *(_text(v) for v in row), _text(effect.get("claims")), _text(effect.get("worker_id"))
            )
    out.console.print(table)
    if effects.row_count:
        out.console.print(effects)
    if isinstance(trace.get("totals"), dict):
        out.console.print("totals: " + ", ".join(f"{k} {v}" for k, v in trace["totals"].items()))


def _op_detail(op: dict[str, Any]) -> str:
    if op.get("error"):
        return f"{str(op['error'].get('type')).rpartition('.')[2]}: {op['error'].get('message')}"
    if op.get("signal"):
        return f"signal {op['signal'].get('name')}: {json.dumps(op['signal'].get('payload'))}"
    if op.get("wait"):
        return f"waiting for {op['wait'].get('signal')} until {_when(op['wait'].get('deadline')) or 'ever'}"
    if op.get("timer"):
        return f"timer fires at {_when(op['timer'].get('fire_at'))}"
    return "" if op.get("result") is None else json.dumps(op["result"], default=str)


def show_any(out: Out, data: Any, title: str) -> None:
    """A JSON document whose shape this CLI does not pin (trace, summary): scalars, then its tables."""
    if not isinstance(data, dict):
        out.console.print(Text(f"{title}:", style="bold"))
        out.console.print_json(data=data)
        return
    grid = Table(title=title, title_justify="left", show_header=False)
    for name, value in data.items():
        if not isinstance(value, dict | list):
            grid.add_row(Text(name, style="bold"), _text(value))
    if grid.row_count:
        out.console.print(grid)
    for name, value in data.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            columns = list(dict.fromkeys(key for item in value for key in item))
            table = _table(name, *columns)
            for item in value:
                table.add_row(*(_text(item.get(column), 60) for column in columns))
            out.console.print(table)
        elif isinstance(value, dict | list):
            show_any(out, value, name)


# -- commands -------------------------------------------------------------------------------------


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
        job: dict[str, Any] = api.get(_job(job_id))
        if JobStatus(job["status"]).is_terminal or time.monotonic() >= deadline:
            return job
        time.sleep(min(pause, max(0.0, deadline - time.monotonic())))
        pause = min(1.0, pause * 2)


def cmd_status(args: argparse.Namespace, api: Api, out: Out) -> int:
    job = api.get(_job(args.id))
    out.emit(job, lambda: show_job(out, job))
    return EXIT_OK


def cmd_jobs(args: argparse.Namespace, api: Api, out: Out) -> int:
    page = api.get("/jobs", status=args.status, limit=args.limit, cursor=args.cursor)

    def render() -> None:
        table = _table("Jobs, newest change first", "job", "type", "version", "status", "created", "updated")
        for job in page["jobs"]:
            row = (job["job_id"], job["job_type"], job["version"])
            table.add_row(
                *map(_text, row), _status(job["status"]), _when(job["created_at"]), _when(job["updated_at"])
            )
        out.console.print(table)
        if page.get("next_cursor"):
            out.console.print(f"more: aetheris jobs --cursor {page['next_cursor']}")

    out.emit(page, render)
    return EXIT_OK


def cmd_events(args: argparse.Namespace, api: Api, out: Out) -> int:
    events = api.pages(_job(args.id, "events"), "events")
    out.emit(
        {"events": events, "next_cursor": None}, lambda: show_events(out, events, f"Events of {args.id}")
    )
    return EXIT_OK


def cmd_signal(args: argparse.Namespace, api: Api, out: Out) -> int:
    body = {"payload": _json_arg(args.payload, "--payload")}
    if args.signal_id:
        body["signal_id"] = args.signal_id
    _, sent = api.call("POST", _job(args.id, "signals", args.name), body)
    out.emit(
        sent, lambda: out.console.print(f"signal {args.name} accepted for job {args.id}: {sent['signal_id']}")
    )
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, api: Api, out: Out) -> int:
    _, answer = api.call("POST", _job(args.id, "cancel"))
    status = answer.get("status", "?") if isinstance(answer, dict) else "?"
    out.emit(answer, lambda: out.console.print(f"cancel requested for job {args.id} (status {status})"))
    return EXIT_OK


def cmd_trace(args: argparse.Namespace, api: Api, out: Out) -> int:
    try:
        trace = api.get(_job(args.id, "trace"))
    except ApiError as error:
        if error.code != "not_found":  # not_found is the missing route; job_not_found is an answer
            raise
        events = api.pages(_job(args.id, "events"), "events")
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
    job = api.get(_job(job_id))
    given = None if input_arg is None else _json_arg(input_arg, "--input")
    if "input" not in job and input_arg is None:
        raise MissingInput(
            f"GET /jobs/{job_id} at {api.url} does not return the job's `input`, which a history needs; "
            "pass the input the job was started with as --input JSON (or @file)"
        )
    if "input" in job and input_arg is not None and job["input"] != given:
        raise UsageError(f"--input differs from the input the API recorded for job {job_id}; drop --input")
    events = api.pages(_job(job_id, "events"), "events")
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


def show_replay(out: Out, history: JobHistory, report: Any) -> None:
    job = history.job
    where = f"job {job.job_id} ({job.job_type} v{job.version}, {len(history.events)} events)"
    if report.consistent:
        end = "; it reached the job's end" if report.reached_end else "; the recorded log ends there"
        same = ", with the recorded result" if report.output_matches else ""
        out.console.print(f"[green]consistent[/] through {report.operations} operations: {where}{end}{same}")
        return
    diverged = report.divergence
    if diverged is None:
        out.console.print(f"[red]divergent[/]: {where} replayed to its end but returned another result")
        return
    out.console.print(f"[red]divergent[/] at operation {diverged.position}: {where}")
    table = _table("Recorded vs requested", "op", "recorded", "today's code")
    recorded: dict[int, str] = {}
    for event in history.events:
        if event.op is not None and event.op_kind is not None:
            recorded.setdefault(event.op, f"{event.op_kind.value} {event.name!r}")
    for op in sorted(recorded.keys() | {diverged.position}):
        if op == diverged.position:
            was, asked = Text(f"- {diverged.recorded}", "red"), Text(f"+ {diverged.requested}", "green")
            table.add_row(str(op), was, asked)
        else:
            verdict = Text("same", "green") if op < diverged.position else Text("not replayed", "dim")
            table.add_row(str(op), _text(recorded[op]), verdict)
    out.console.print(table)
    out.console.print(Text(str(diverged)))


def cmd_dev(args: argparse.Namespace, api: Api, out: Out) -> int:
    from aetheris_infra.local_stack import LocalStack

    stack = LocalStack(args.app, workers=args.workers, host=args.host, port=args.port)
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
    common = argparse.ArgumentParser(add_help=False)  # the same options after the command name
    common.add_argument("--api", default=argparse.SUPPRESS, help=api_help)
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
        return run(args, Api(args.api), out)
    except CliError as error:
        out.errors.print(Text(f"error: {error}", style="red"))
        return error.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
