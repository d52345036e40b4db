"""How the CLI shows jobs, events, traces and replay verdicts: rich tables, or JSON with ``--json``."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from aetheris.history import JobHistory

_STYLES: Final = {"COMPLETED": "green", "FAILED": "red", "CANCELLED": "magenta", "WAITING": "yellow"}


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


def cell(value: Any, width: int = 0) -> Text:
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)
    return Text(text if not width or len(text) <= width else text[: width - 1] + "…")


def status_cell(status: Any) -> Text:
    return Text(str(status), style=_STYLES.get(str(status), "cyan"))


def when(value: Any) -> str:
    return str(value or "").replace("T", " ")[:23]


def table_of(title: str, *columns: str) -> Table:
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
        ("status", status_cell(job.get("status"))),
        ("created", when(job.get("created_at"))),
        ("updated", when(job.get("updated_at"))),
        (
            "step",
            f"{job['current_step']} (attempt {job.get('attempt', 0)})" if job.get("current_step") else None,
        ),
        ("last seq", job.get("last_seq")),
        ("waiting for", job.get("waiting_for")),
        ("idempotency key", job.get("idempotency_key")),
        ("forked from", _forked_from(job.get("forked_from"))),
        ("budget", _budget(job.get("budget"))),
    ]
    for name, value in rows:
        if value is not None:
            table.add_row(Text(name, style="bold"), value if isinstance(value, Text) else cell(value))
    out.console.print(table)
    if job.get("error"):
        error = job["error"]
        out.console.print(Text(f"error: {error.get('type')}: {error.get('message')}", style="red"))
    if job.get("result") is not None:
        out.console.print(Text("result:", style="bold"))
        out.console.print_json(data=job["result"])


def _forked_from(link: Any) -> str | None:
    if not isinstance(link, dict):
        return None
    copied = link.get("copied_through")
    return f"{link.get('job_id')} at seq {link.get('seq')} ({link.get('via')}, copied through {copied})"


def _budget(budget: Any) -> str | None:
    if not isinstance(budget, dict):
        return None
    limits = [
        f"{name}={budget[name]}"
        for name in ("max_tokens", "max_cost_usd", "max_steps")
        if budget.get(name) is not None
    ]
    if budget.get("on_exceeded") == "wait":
        limits.append(f"waits for signal {budget.get('raise_signal')!r} when exceeded")
    return ", ".join(limits) or "no limits"


def show_events(out: Out, events: list[dict[str, Any]], title: str) -> None:
    table = table_of(title, "seq", "event", "op", "step", "attempt", "worker", "fence", "at", "ms", "note")
    for event in events:
        table.add_row(
            *(cell(event.get(k)) for k in ("seq", "type", "op", "name", "attempt", "worker_id", "fence")),
            cell(when(event.get("at"))),
            cell(event.get("duration_ms")),
            cell(_note(event), 70),
        )
    out.console.print(table)


def _note(event: dict[str, Any]) -> str:
    if event.get("reclaimed_from"):
        return f"taken over from {event['reclaimed_from']}"
    if event.get("error"):
        return f"{event['error'].get('type', '').rpartition('.')[2]}: {event['error'].get('message')}"
    return str(event.get("result") or "")


def show_trace(out: Out, trace: dict[str, Any]) -> None:
    """The job, its timeline (the UI's: every attempt, a crash and its takeover included), the
    effects of its steps with their inputs and outputs, and the totals."""
    from datetime import UTC, datetime

    from aetheris_infra.cli_timeline import show_timeline

    operations = trace.get("operations")
    if not isinstance(operations, list):
        show_any(out, trace, f"Trace of {trace.get('job_id')}")
        return
    header = ("job_id", "job_type", "version", "status", "created_at", "updated_at", "waiting_for", "error")
    show_job(out, {k: v for k, v in trace.items() if k in header})
    show_timeline(out, trace, datetime.now(UTC))
    effects = table_of(
        "Effects (tool calls by idempotency key)",
        "op",
        "tool",
        "key",
        "state",
        "claims",
        "worker",
        "input",
        "output",
    )
    for op in operations:
        for effect in op.get("effects") or []:
            row = (op.get("index"), effect.get("name"), effect.get("idempotency_key"), effect.get("state"))
            output = effect.get("error") or effect.get("result")
            effects.add_row(
                *(cell(v) for v in row),
                cell(effect.get("claims")),
                cell(effect.get("worker_id")),
                cell(effect.get("input"), 40),
                cell(output, 40),
            )
    if effects.row_count:
        out.console.print(effects)
    if trace.get("open_claim"):
        show_any(out, trace["open_claim"], "Open claim")
    if isinstance(trace.get("totals"), dict):
        out.console.print("totals: " + ", ".join(f"{k} {v}" for k, v in trace["totals"].items()))


def show_jobs(out: Out, page: dict[str, Any], more: str | None) -> None:
    """A page of jobs. Job ids are never cut or wrapped, whatever the width (they are what the other
    commands take): the other columns wrap first, and under 120 columns the table drops ``created``
    and folds the version into the type. ``more`` is the command for the next page."""
    narrow = out.console.width < 120
    table = table_of("Jobs, newest change first")
    ids = [str(job["job_id"]) for job in page["jobs"]]
    table.add_column("job", no_wrap=True, min_width=max((len(i) for i in ids), default=3))
    columns = ("type", "status", "updated") if narrow else ("type", "version", "status", "created", "updated")
    for column in columns:
        table.add_column(column, overflow="fold")
    for job in page["jobs"]:
        kind = f"{job['job_type']} v{job['version']}" if narrow else str(job["job_type"])
        values = {
            "type": cell(kind),
            "version": cell(job["version"]),
            "status": status_cell(job["status"]),
            "created": Text(when(job["created_at"])[:19]),
            "updated": Text(when(job["updated_at"])[:19]),
        }
        table.add_row(Text(str(job["job_id"])), *(values[c] for c in columns))
    out.console.print(table)
    if more:
        out.console.print(Text(f"more: {more}"), soft_wrap=True)  # one line: a cursor must stay whole


def show_any(out: Out, data: Any, title: str) -> None:
    """A JSON document whose shape this CLI does not pin (trace, summary): scalars, then its tables."""
    if not isinstance(data, dict):
        out.console.print(Text(f"{title}:", style="bold"))
        out.console.print_json(data=data)
        return
    grid = Table(title=title, title_justify="left", show_header=False)
    for name, value in data.items():
        if not isinstance(value, dict | list):
            grid.add_row(Text(name, style="bold"), cell(value))
    if grid.row_count:
        out.console.print(grid)
    for name, value in data.items():
        if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
            columns = list(dict.fromkeys(key for item in value for key in item))
            table = table_of(name, *columns)
            for item in value:
                table.add_row(*(cell(item.get(column), 60) for column in columns))
            out.console.print(table)
        elif isinstance(value, dict | list):
            show_any(out, value, name)


# -- commands -------------------------------------------------------------------------------------


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
    table = table_of("Recorded vs requested", "op", "recorded", "today's code")
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
            table.add_row(str(op), cell(recorded[op]), verdict)
    out.console.print(table)
    out.console.print(Text(str(diverged)))


# -- operator views ------------------------------------------------------------------------------


def _age(seconds: Any) -> str:
    if seconds is None:
        return ""
    total = int(float(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d"] * bool(days) + [f"{hours}h"] * bool(hours) + [f"{minutes}m"] * bool(minutes)
    return " ".join(parts[:2]) if parts else f"{secs}s"


def _job_column(table: Table) -> None:
    """Job ids are never cut or folded: they are what the next command needs."""
    table.columns[0].no_wrap = True
    table.columns[0].overflow = "ignore"


def show_summary(out: Out, summary: dict[str, Any]) -> None:
    """``GET /observability/summary``: jobs by status, queue depths, the stuck count."""
    jobs, finished = summary.get("jobs") or {}, summary.get("finished_last_hour") or {}
    ages = summary.get("oldest_age_seconds") or {}
    capped = set(summary.get("capped") or [])
    table = table_of(f"Jobs at {when(summary.get('generated_at'))}", "status", "jobs", "last hour", "oldest")
    for status in (*jobs, *(s for s in finished if s not in jobs)):
        table.add_row(
            status_cell(status),
            _counted(jobs, status, capped),
            _counted(finished, status, capped),
            _age(ages.get(status)),
        )
    out.console.print(table)
    queues = table_of("Queues", "queue", "visible", "in flight", "delayed")
    for name, depth in (summary.get("queues") or {}).items():
        style = "red" if name.endswith("_dlq") and depth.get("visible") else ""
        queues.add_row(
            Text(name, style=style), *(cell(depth.get(k)) for k in ("visible", "in_flight", "delayed"))
        )
    out.console.print(queues)
    stuck = int(summary.get("stuck") or 0)
    note = "see `aetheris stuck`" if stuck else "none"
    out.console.print(Text(f"stuck jobs: {stuck} ({note})", style="red" if stuck else "green"))


def _counted(counts: dict[str, Any], status: str, capped: set[str]) -> str:
    """The count, ``+`` after it when the API stopped counting (a lower bound); blank if none."""
    if status not in counts:
        return ""
    return f"{counts[status]}+" if status in capped else str(counts[status])


def show_stuck(out: Out, report: dict[str, Any]) -> None:
    """``GET /observability/stuck``: each job with its reason and the evidence for it."""
    jobs = report.get("jobs") or []
    threshold = _age(report.get("threshold_seconds")) or "0s"
    if not jobs:
        out.console.print(Text(f"no stuck jobs (none stuck for {threshold} or more)", style="green"))
        return
    table = table_of(f"Stuck jobs (for {threshold} or more)", "job", "type", "status", "reason", "since")
    _job_column(table)
    for job in jobs:
        table.add_row(
            cell(job.get("job_id")),
            cell(job.get("job_type")),
            status_cell(job.get("status")),
            Text(str(job.get("reason")), style="red"),
            when(job.get("since"))[:19],
        )
    out.console.print(table)
    # The evidence under the table, one job a line: it would squeeze the table to nothing at 80 columns.
    for job in jobs:
        out.console.print(
            Text.assemble((f"{job.get('job_id')}: ", "bold"), _stuck_note(job.get("evidence") or {}))
        )


def _stuck_note(evidence: dict[str, Any]) -> str:
    """The evidence in one line: last commit, the claim (worker, fence, lease), rescues, dead letters."""
    notes = []
    if evidence.get("last_event"):
        at = when(evidence.get("last_commit_at"))[:19]
        notes.append(f"seq {evidence.get('last_seq')} {evidence['last_event']} at {at}")
    if evidence.get("worker_id"):
        notes.append(f"worker {evidence['worker_id']} fence {evidence.get('fence')}")
    if evidence.get("lease_until"):
        notes.append(f"lease until {when(evidence['lease_until'])[:19]}")
    if evidence.get("abandoned_claims"):
        notes.append(f"{evidence['abandoned_claims']} abandoned claim(s)")
    if evidence.get("rescue_ticks"):
        notes.append(f"{evidence['rescue_ticks']} rescue tick(s)")
    letters = evidence.get("dead_letters") or []
    if letters:
        notes.append(f"{len(letters)} dead letter(s), {letters[0].get('receive_count')} receives")
    return "; ".join(notes)
