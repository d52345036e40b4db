"""``make demo``: the support agent resolves a refund ticket while workers die and the network fails,
a human approves the refund, and a three-day timer runs out on the fake clock.

Runs job ``support.refund`` with the scripted (offline) model on ``LocalRuntime`` — moto
in-process, two local workers that receive real SQS batches and call the worker handler SAM
deploys, a fake clock — and injects three faults: the worker that ran the ``plan`` step dies before
committing it (``before_commit``), the CRM drops the first connection (a ``ConnectionError`` the
step's retry policy absorbs), and the worker that sent the reply e-mail dies before recording the
send (``after_effect`` on an ``AT_LEAST_ONCE`` tool). The refund is over the agent's approval
threshold, so the job parks ``WAITING`` for signal ``approval``; the demo says so and approves as a
support lead would, through ``local.signal`` (the API's path: signal queue, inbox, wake-up). After
the reply the job sleeps three days on a durable timer; the demo moves the fake clock three days,
the scheduled sweeper fires the timer and the job mails its satisfaction survey.

It prints what happens as it happens, then the job's timeline, the effect ledger, the calls each
fake service saw per idempotency key and the result, and checks them: the job completed with the
expected refund, exactly one refund was issued and none reversed, the approval was consumed once,
the timer fired after three days, the reply and the survey were each delivered once, every fault
fired and no key was called more often than those faults explain. Exit status 0 only when every
check holds.
"""

from __future__ import annotations

import io
import json
import sys
import warnings
from collections.abc import Callable
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
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
APPROVAL = {"approved": True, "by": "dana (support lead)"}
FOLLOW_UP_AFTER = timedelta(days=3)  # the agent's follow-up timer (agents.support.FOLLOW_UP_AFTER)
EXPECTED_RESULT = {
    "status": "refunded",
    "refund_id": "re_0001",
    "reviewed_by": APPROVAL["by"],
    "survey_sent": True,
}
# How many idempotency keys each service sees: one per tool call of the job, two for mail (the
# reply and the survey). Each key is called once, except a key a fault hit, called exactly twice: the
# CRM's by the retry, the reply's by the worker that took over the unrecorded send (same key:
# delivered once).
EXPECTED_KEYS = {
    "llm.plan": 1,
    "crm.get_order": 1,
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
SURVEY_SUBJECT = "How did we do"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Run:
    job_id: str
    view: JobView
    waiting: JobView  # the job when it first went idle: parked for the approval
    sleeping: JobView  # after the approval: parked on the follow-up timer
    events: list[Event]
    ledger: list[dict[str, Any]]
    crashes: list[str]
    calls: dict[str, dict[str, int]]
    faulted: dict[str, str]  # service -> the one key a fault hit
    refunds_issued: int
    reversals: int
    mails_delivered: list[tuple[str, str]]  # (subject, body) in delivery order
    story: list[str] = field(default_factory=list)


def main() -> int:
    if str(FUNCTIONS_DIR) not in sys.path:
        sys.path.insert(0, str(FUNCTIONS_DIR))  # where Lambda and pytest find the agents, too
    # Bound to today's stdout: the run redirects stdout (the worker's metrics) while it narrates.
    console = Console(file=sys.stdout) if sys.stdout.isatty() else Console(file=sys.stdout, width=170)
    console.rule(
        "[bold]Aetheris demo: support.refund through two worker crashes, a network error, "
        "a human approval and a 3-day timer"
    )
    console.print(f"ticket {TICKET['ticket_id']}: {TICKET['message']!r}")
    console.print("faults injected:")
    for fault in FAULTS:
        console.print(f"  • {fault}")
    run = run_scenario(say=console.print)
    show(console, run)
    problems = check(run)
    for problem in problems:
        console.print(f"[bold red]FAIL[/] {escape(problem)}")
    if not problems:
        console.print(
            "[bold green]OK[/] completed; one refund, approved once; survey sent once after 3 days; "
            "no effect duplicated by the faults"
        )
    return 1 if problems else 0


def run_scenario(say: Say | None = None) -> Run:
    # Imported once functions/ is on sys.path. mypy's mypy_path lacks functions/, so it cannot follow
    # these imports yet; the ignores stay harmless (unused-ignore) once it can.
    from agents.model import ScriptedModel, use_model
    from agents.support import app
    from agents.tools import registry

    registry.reset()
    use_model(ScriptedModel())  # offline and deterministic, whatever AETHERIS_MODEL says
    try:
        return _run(app, registry, say or (lambda _: None))
    finally:
        use_model(None)


def settle(local: LocalRuntime, job_id: str) -> JobView:
    """Deliver every message, skipping the fake clock to each held tick (retry backoff), until the job
    is finished or parked with nothing scheduled: waiting for a signal, or on a timer the sweeper
    fires once the clock reaches it. (``LocalRuntime.wait`` raises on a job parked like that.)"""
    while True:
        local.run_until_idle()
        due = local.queue.next_due_in()
        if due is None:
            return local.get(job_id)
        local.advance(due)


def _run(app: App, registry: Any, say: Say) -> Run:
    story: list[str] = []

    def tell(line: str) -> None:
        story.append(line)
        say(line)

    quiet = io.StringIO()  # the worker handler's metrics go to stdout, as Lambda wants them
    with LocalRuntime(app, workers=2) as local, redirect_stdout(quiet), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        faulted: dict[str, str] = {}

        def inject(service: str, key: str, nth: int) -> None:
            if nth != 1 or service in faulted or service not in ("crm.get_order", "mail.send"):
                return
            faulted[service] = key  # the CRM's first call fails (fail_next); the first mail's worker dies
            if service == "mail.send":
                local.crash_at("after_effect")  # the sending worker dies before it records the send

        local.crash_at("before_commit")  # the first commit (step plan) never happens
        registry.crm.fail_next = 1
        registry.calls.observers.append(inject)
        job_id = local.start("support.refund", TICKET, idempotency_key=TICKET["ticket_id"])
        tell(f"▶ started job [bold]{job_id}[/]")

        waiting = settle(local, job_id)
        if waiting.status is JobStatus.WAITING:
            deadline = _detail(local.events(job_id), EventType.WAIT_STARTED, "deadline")
            tell(
                f"⏸ the job is [bold yellow]WAITING[/] for signal [bold]{waiting.waiting_for!r}[/]: the "
                f"refund is over the agent's approval threshold; it gives up at {_when(deadline)}. "
                "No worker, lease or message is held meanwhile."
            )
            local.signal(job_id, "approval", APPROVAL, signal_id=f"approval-{TICKET['ticket_id']}")
            tell(f"✉ a human approves: local.signal({job_id[:8]}…, 'approval', {json.dumps(APPROVAL)})")
        else:
            tell(f"[red]the job is {waiting.status.value}, not waiting for the approval[/]")

        sleeping = settle(local, job_id)
        if sleeping.status is JobStatus.SLEEPING:
            fire_at = _detail(local.events(job_id), EventType.TIMER_STARTED, "fire_at")
            tell(
                f"⏸ the job replied and is [bold yellow]SLEEPING[/] until {_when(fire_at)} "
                "(the follow-up timer: 3 days)"
            )
            local.advance(FOLLOW_UP_AFTER)
            now = _when(local.clock.now().isoformat())
            tell(f"⏩ advanced the fake clock 3 days, to {now}: the scheduled sweeper fires the timer")
        else:
            tell(f"[red]the job is {sleeping.status.value}, not sleeping on its follow-up timer[/]")

        view = settle(local, job_id)
        tell(f"■ the job is [bold]{view.status.value}[/]")
        return Run(
            job_id=job_id,
            view=view,
            waiting=waiting,
            sleeping=sleeping,
            events=local.events(job_id),
            ledger=local.runtimes[0].effects(job_id),
            crashes=[crash.point for crash in local.crashes],
            calls=registry.calls.by_service(),
            faulted=dict(faulted),
            refunds_issued=len(registry.payments.refunds),
            reversals=len(registry.payments.reversals),
            mails_delivered=[(subject, body) for _, subject, body in registry.mail.outbox.values()],
            story=story,
        )


def check(run: Run) -> list[str]:
    problems: list[str] = []
    if run.view.status is not JobStatus.COMPLETED:
        problems.append(f"the job is {run.view.status.value}, not COMPLETED: {run.view.error}")
    result = run.view.result if isinstance(run.view.result, dict) else {}
    if {k: result.get(k) for k in EXPECTED_RESULT} != EXPECTED_RESULT:
        problems.append(f"the result is {run.view.result!r}; expected {EXPECTED_RESULT}")
    if run.waiting.status is not JobStatus.WAITING or run.waiting.waiting_for != "approval":
        problems.append(f"the job did not park waiting for the approval (it was {run.waiting.status.value})")
    if run.sleeping.status is not JobStatus.SLEEPING:
        problems.append(f"the job did not sleep on its follow-up timer (it was {run.sleeping.status.value})")
    if run.refunds_issued != 1:
        problems.append(f"{run.refunds_issued} refunds were issued; exactly one was expected")
    if run.reversals:
        problems.append(f"{run.reversals} refunds were reversed; none was expected")
    problems += _check_approval_and_timer(run.events)
    replies = [body for subject, body in run.mails_delivered if not subject.startswith(SURVEY_SUBJECT)]
    surveys = [body for subject, body in run.mails_delivered if subject.startswith(SURVEY_SUBJECT)]
    if replies != [result.get("reply")]:
        problems.append(f"the customer received replies {replies!r}, not the one reply of the result")
    if len(surveys) != 1:
        problems.append(
            f"the customer received {len(surveys)} satisfaction surveys; exactly one was expected"
        )
    if run.crashes != EXPECTED_CRASHES:
        problems.append(f"the crashes injected were {run.crashes}, expected {EXPECTED_CRASHES}")
    if not any(e.type is EventType.STEP_FAILED and e.name == "lookup_order" for e in run.events):
        problems.append("the CRM's connection error never failed the lookup_order step")
    for service in sorted(set(run.calls) - set(EXPECTED_KEYS)):
        problems.append(f"{service} was called; the run should never reach it")
    for service, count in EXPECTED_KEYS.items():
        keys = run.calls.get(service, {})
        if len(keys) != count:
            problems.append(
                f"{service} saw {len(keys)} idempotency keys; expected {count}, one per tool call"
            )
        for key, n in keys.items():
            expected = expected_calls(run, service, key)
            if n != expected:
                problems.append(f"{service} was called {n} times with {key}; expected {expected}")
    return problems


def expected_calls(run: Run, service: str, key: str) -> int:
    """Once per key; twice for the key a fault hit (the retry, or the takeover of the send)."""
    return 2 if run.faulted.get(service) == key else 1


def _check_approval_and_timer(events: list[Event]) -> list[str]:
    problems: list[str] = []
    kinds = [e.type for e in events]
    consumed = [e for e in events if e.type is EventType.SIGNAL_CONSUMED]
    if kinds.count(EventType.WAIT_STARTED) != 1 or len(consumed) != 1:
        problems.append(
            f"the approval wait started {kinds.count(EventType.WAIT_STARTED)} times and consumed "
            f"{len(consumed)} signals; expected once each"
        )
    elif consumed[0].result_json() != APPROVAL:
        problems.append(f"the job consumed {consumed[0].result_json()!r}, not the approval {APPROVAL}")
    started = [e for e in events if e.type is EventType.TIMER_STARTED]
    fired = [e for e in events if e.type is EventType.TIMER_FIRED]
    if len(started) != 1 or len(fired) != 1:
        problems.append(f"the timer started {len(started)} times and fired {len(fired)} times; expected once")
    elif fired[0].at - started[0].at < FOLLOW_UP_AFTER:
        problems.append(f"the follow-up timer fired after {fired[0].at - started[0].at}, before 3 days")
    return problems


# -- rendering ------------------------------------------------------------------------------------


def show(console: Console, run: Run) -> None:
    console.print(timeline(run))
    console.print(ledger(run))
    console.print(service_calls(run))
    delivered = (
        f"refunds issued: {run.refunds_issued}, reversed: {run.reversals}; "
        f"e-mails delivered: {len(run.mails_delivered)} ({', '.join(s for s, _ in run.mails_delivered)})"
    )
    console.print(
        Panel.fit(
            f"{escape(_result_text(run.view))}\n{escape(delivered)}", title=f"result: {run.view.status.value}"
        )
    )


def timeline(run: Run) -> Table:
    table = Table(
        title="Timeline: the job's event log",
        title_justify="left",
        caption="at: fake-clock time since the job started; ms: step duration on the fake clock",
    )
    for column in ("seq", "at", "event", "step", "attempt", "worker", "fence", "ms", "note"):
        table.add_column(
            column, justify="right" if column in ("seq", "at", "attempt", "fence", "ms") else "left"
        )
    takeovers = [e.seq for e in run.events if e.reclaimed_from]
    died_at = dict(zip(takeovers, run.crashes, strict=False)) if len(takeovers) == len(run.crashes) else {}
    start = run.events[0].at if run.events else None
    for event in run.events:
        table.add_row(
            str(event.seq),
            _offset(event.at - start) if start is not None else "",
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
        error = escape(f"{event.error.type.rpartition('.')[2]}: {event.error.message}")
        if event.next_attempt_at is not None:
            delay = (event.next_attempt_at - event.at).total_seconds()
            parts.append(f"[red]{error}[/]; [yellow]retry scheduled[/] in {delay:.1f} s")
        else:
            parts.append(f"[red]{error}[/]; no more attempts")
    elif event.type is EventType.JOB_CREATED:
        parts.append("started")
    elif event.type is EventType.WAIT_STARTED:
        deadline = event.detail.get("deadline")
        parts.append(f"[yellow]waiting for signal {event.detail.get('signal')!r}[/] until {_when(deadline)}")
    elif event.type is EventType.SIGNAL_CONSUMED:
        parts.append(
            f"[green]signal {event.detail.get('signal')!r} consumed[/]: {_summary(event.result_json())}"
        )
    elif event.type is EventType.TIMER_STARTED:
        parts.append(f"[yellow]sleeping[/] until {_when(event.detail.get('fire_at'))}")
    elif event.type is EventType.TIMER_FIRED:
        parts.append("[green]timer fired[/]")
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
    for column in ("service", "key", "calls", "expected", ""):
        table.add_column(column, justify="right" if column in ("calls", "expected") else "left")
    for service, keys in run.calls.items():
        for key, calls in keys.items():
            expected = expected_calls(run, service, key)
            mark = "[green]ok[/]" if calls == expected else "[red]wrong[/]"
            table.add_row(service, _key(run.job_id, key), str(calls), str(expected), mark)
    return table


def _detail(events: list[Event], event_type: EventType, name: str) -> Any:
    return next((e.detail.get(name) for e in reversed(events) if e.type is event_type), None)


def _when(moment: Any) -> str:
    """An ISO timestamp from the log as ``2026-01-03 00:00`` (the fake clock's minutes are enough)."""
    if not isinstance(moment, str):
        return "never"
    return datetime.fromisoformat(moment).strftime("%Y-%m-%d %H:%M")


def _offset(elapsed: timedelta) -> str:
    minutes, seconds = divmod(int(elapsed.total_seconds()), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    clock = f"{hours:02d}:{minutes:02d}:{seconds:02d}"
    return f"+{days}d {clock}" if days else f"+{clock}"


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
