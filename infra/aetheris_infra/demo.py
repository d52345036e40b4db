"""``make demo``: the support agent resolves a refund ticket while workers die and the network fails.

Runs job ``support.refund`` with the scripted (offline) model on ``LocalRuntime`` — moto
in-process, two local workers that receive real SQS batches and call the worker handler SAM
deploys, a fake clock — and injects three faults: the worker that ran the ``plan`` step dies before
committing it (``before_commit``), the CRM drops the first connection (a ``ConnectionError`` the
step's retry policy absorbs), and the worker that sent the reply e-mail dies before recording the
send (``after_effect`` on an ``AT_LEAST_ONCE`` tool). It prints the job's timeline, the effect
ledger, the calls each fake service saw per idempotency key and the result, then checks them: the
job completed with the expected refund, exactly one refund was issued, every fault fired and no key
was called more often than those faults explain. Exit status 0 only when every check holds.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from aetheris import App, Event, EventType, JobStatus, JobView
from aetheris.testing import LocalRuntime

FUNCTIONS_DIR = Path(__file__).resolve().parents[2] / "functions"
TICKET = {
    "ticket_id": "T-2041",
    "customer_id": "cus-42",
    "order_id": "ord-1001",
    "message": "Hi! My noise-cancelling headphones arrived with a cracked headband. Can I get a refund?",
}
EXPECTED_RESULT = {"status": "refunded", "refund_id": "re_0001"}
# Calls each service may see under its one key: the CRM is called again by the retry, and the mail
# service again by the worker that took over the unrecorded send (same key: delivered once).
EXPECTED_CALLS = {
    "llm.plan": 1,
    "crm.get_order": 2,
    "policy.check_refund": 1,
    "llm.decide": 1,
    "payments.refund": 1,
    "mail.send": 2,
}
EXPECTED_CRASHES = ["before_commit", "after_effect"]
FAULTS = (
    "the worker running step plan dies after the model answered, before its commit (before_commit)",
    "the CRM drops the first connection (ConnectionError): lookup_order is retried by its RetryPolicy",
    "the worker running step reply dies after the e-mail went out, before recording it (after_effect)",
)


@dataclass(frozen=True)
class Run:
    job_id: str
    view: JobView
    events: list[Event]
    ledger: list[dict[str, Any]]
    crashes: list[str]
    calls: dict[str, dict[str, int]]
    refunds_issued: int
    mails_delivered: list[str]


def main() -> int:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))  # where Lambda and pytest find the agents, too
    console = Console() if sys.stdout.isatty() else Console(width=150)
    console.rule("[bold]Aetheris demo: support.refund through two worker crashes and a network error")
    run = run_scenario()
    show(console, run)
    problems = check(run)
    for problem in problems:
        console.print(f"[bold red]FAIL[/] {problem}")
    if not problems:
        console.print("[bold green]OK[/] completed, one refund issued, no effect duplicated by the faults")
    return 1 if problems else 0


def run_scenario() -> Run:
    # Imported once functions/ is on sys.path. mypy's mypy_path lacks functions/, so it cannot follow
    # these imports yet; the ignores stay harmless (unused-ignore) once it can.
    from agents.model import ScriptedModel, use_model
    from agents.support import app
    from agents.tools import registry

    registry.reset()
    use_model(ScriptedModel())  # offline and deterministic, whatever AETHERIS_MODEL says
    try:
        return _run(app, registry)
    finally:
        use_model(None)


def _run(app: App, registry: Any) -> Run:
    quiet = io.StringIO()  # the worker handler's metrics go to stdout, as Lambda wants them
    with LocalRuntime(app, workers=2) as local, redirect_stdout(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def crash_after_first_send(service: str, key: str, nth: int) -> None:
            if service == "mail.send" and nth == 1:
                local.crash_at("after_effect")  # the sending worker dies before it records the send

        local.crash_at("before_commit")  # the first commit (step plan) never happens
        registry.crm.fail_next = 1
        registry.calls.observers.append(crash_after_first_send)
        job_id = local.start("support.refund", TICKET, idempotency_key=TICKET["ticket_id"])
        view = local.wait(job_id)
        return Run(
            job_id=job_id,
            view=view,
            events=local.events(job_id),
            ledger=local.runtimes[0].effects(job_id),
            crashes=[crash.point for crash in local.crashes],
            calls=registry.calls.by_service(),
            refunds_issued=len(registry.payments.refunds),
            mails_delivered=[body for _, _, body in registry.mail.outbox.values()],
        )


def check(run: Run) -> list[str]:
    problems: list[str] = []
    if run.view.status is not JobStatus.COMPLETED:
        problems.append(f"the job is {run.view.status.value}, not COMPLETED: {run.view.error}")
    result = run.view.result if isinstance(run.view.result, dict) else {}
    if {k: result.get(k) for k in EXPECTED_RESULT} != EXPECTED_RESULT:
        problems.append(f"the result is {run.view.result!r}; expected {EXPECTED_RESULT}")
    if run.refunds_issued != 1:
        problems.append(f"{run.refunds_issued} refunds were issued; exactly one was expected")
    if run.mails_delivered != [result.get("reply")]:
        problems.append(f"the customer received {run.mails_delivered!r}, not the one reply of the result")
    if run.crashes != EXPECTED_CRASHES:
        problems.append(f"the crashes injected were {run.crashes}, expected {EXPECTED_CRASHES}")
    if not any(e.type is EventType.STEP_FAILED and e.name == "lookup_order" for e in run.events):
        problems.append("the CRM's connection error never failed the lookup_order step")
    for service, most in EXPECTED_CALLS.items():
        keys = run.calls.get(service, {})
        if len(keys) != 1:
            problems.append(f"{service} saw {len(keys)} idempotency keys; every call must carry one key")
        problems += [
            f"{service} was called {n} times with {k}; at most {most}" for k, n in keys.items() if n > most
        ]
    return problems


# -- rendering ------------------------------------------------------------------------------------


def show(console: Console, run: Run) -> None:
    console.print(f"job [bold]{run.job_id}[/], ticket {TICKET['ticket_id']}: {TICKET['message']!r}")
    console.print("faults injected:")
    for fault in FAULTS:
        console.print(f"  • {fault}")
    console.print(timeline(run))
    console.print(ledger(run))
    console.print(service_calls(run))
    delivered = f"refunds issued: {run.refunds_issued}, e-mails delivered: {len(run.mails_delivered)}"
    console.print(
        Panel.fit(f"{_result_text(run.view)}\n{delivered}", title=f"result: {run.view.status.value}")
    )


def timeline(run: Run) -> Table:
    table = Table(title="Timeline: the job's event log", title_justify="left", caption="ms on the fake clock")
    for column in ("seq", "event", "step", "attempt", "worker", "fence", "ms", "note"):
        table.add_column(column, justify="right" if column in ("seq", "attempt", "fence", "ms") else "left")
    takeovers = [e.seq for e in run.events if e.reclaimed_from]
    died_at = dict(zip(takeovers, run.crashes, strict=False)) if len(takeovers) == len(run.crashes) else {}
    for event in run.events:
        table.add_row(
            str(event.seq),
            event.type.value,
            event.name if event.name not in (None, "end") else "",
            str(event.attempt),
            event.worker_id,
            str(event.fence),
            "" if event.duration_ms is None else str(event.duration_ms),
            note(event, died_at.get(event.seq)),
        )
    return table


def note(event: Event, died_at: str | None = None) -> str:
    parts: list[str] = []
    if event.reclaimed_from:
        how = f"it died at {died_at}" if died_at else "its lease expired"
        parts.append(f"[yellow]taken over from worker {event.reclaimed_from}[/] ({how})")
    if event.type is EventType.STEP_FAILED and event.error is not None:
        error = f"{event.error.type.rpartition('.')[2]}: {event.error.message}"
        if event.next_attempt_at is not None:
            delay = (event.next_attempt_at - event.at).total_seconds()
            parts.append(f"[red]{error}[/]; [yellow]retry scheduled[/] in {delay:.1f} s")
        else:
            parts.append(f"[red]{error}[/]; no more attempts")
    elif event.type is EventType.JOB_CREATED:
        parts.append("started")
    elif event.result is not None:
        parts.append(_summary(event.result_json()))
    return "; ".join(parts)


def ledger(run: Run) -> Table:
    table = Table(title="Effect ledger (one entry per tool call key)", title_justify="left")
    for column in ("key", "semantics", "state", "claims", "last claimed by"):
        table.add_column(column, justify="right" if column == "claims" else "left")
    for entry in run.ledger:
        table.add_row(
            _key(run.job_id, str(entry["idempotency_key"])),
            str(entry.get("semantics", "")),
            str(entry["state"]),
            str(entry.get("claims", "")),
            str(entry.get("worker_id", "")),
        )
    return table


def service_calls(run: Run) -> Table:
    table = Table(title="What each fake service saw, per idempotency key", title_justify="left")
    for column in ("service", "key", "calls", "at most", ""):
        table.add_column(column, justify="right" if column in ("calls", "at most") else "left")
    for service, keys in run.calls.items():
        most = EXPECTED_CALLS.get(service, 1)
        for key, calls in keys.items():
            mark = "[green]ok[/]" if calls <= most else "[red]too many[/]"
            table.add_row(service, _key(run.job_id, key), str(calls), str(most), mark)
    return table


def _result_text(view: JobView) -> str:
    if isinstance(view.result, dict):
        return "\n".join(f"{name}: {value}" for name, value in view.result.items())
    return str(view.error or view.result)


def _key(job_id: str, key: str) -> str:
    return key.replace(job_id, "…", 1)


def _summary(value: Any, width: int = 60) -> str:
    """A step result in one short line: a model's first few fields, or the value itself."""
    if isinstance(value, dict):
        text = " ".join(f"{k}={v}" for k, v in value.items() if isinstance(v, (str, int, float, bool)))
    else:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return escape(text if len(text) <= width else text[: width - 1] + "…")


if __name__ == "__main__":
    raise SystemExit(main())
