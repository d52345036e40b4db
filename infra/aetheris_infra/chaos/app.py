"""The chaos jobs: every durable operation in one job type, each tool reporting its real calls.

``order`` reserves stock (an AT_LEAST_ONCE tool, compensated by a release), waits for two signals
(``approve`` and ``ship``; the driver sends them early, late, several times and in either order),
runs one to three work steps (a recorded ``sctx.uuid()`` and an AT_LEAST_ONCE quote; in the
``flaky`` variant the first work step fails its first attempt and is retried), charges (an
AT_MOST_ONCE tool), sleeps, and notifies (AT_LEAST_ONCE). The ``reject`` variant is refused by its
approval: the job fails after both waits, so both signals are still consumed, and the reserve's
compensation must run.

The order's other fields switch on the paths off the happy one (``workload.py``): a third signal
(``memo``, an odd payload), an odd ``note`` in the input (returned as is), a ~200 KB error on the
first attempt of ``work-0`` (from its tool or from the step), a ``fan-out`` step that calls one tool
per recipient in another order on each attempt, a last ``audit`` step (its first attempt fails)
inside a bare ``except:``, a
refund compensating the charge, values recorded by the job function around its compensable steps,
and a cancel asked for from inside the last step or a compensation (``cancel_in``).

The tools stand for external services. Each real call appends one line to the *external ledger*
(a file outside the runtime) before it returns, with the idempotency key the step passes down and
the call's argument, so the checker can count real calls per key without trusting the runtime's
own records. Each call's answer is unique, so the checker can tell which call's result the job
went on with.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from aetheris import App, EffectSemantics, JobContext, NonRetryableError, RetryPolicy, StepContext, hosting
from aetheris.errors import JobFinished
from aetheris_infra.chaos.jsonl import JsonLines

ALO, AMO = EffectSemantics.AT_LEAST_ONCE, EffectSemantics.AT_MOST_ONCE
JOB_TYPE = "order"
SIGNALS = ("approve", "ship")
MEMO = "memo"  # the third signal, waited for by orders with ``memo`` set
# Tool name → semantics: what the checker holds each key of that tool to.
TOOLS: dict[str, EffectSemantics] = {
    "inventory.reserve": ALO,
    "inventory.release": ALO,
    "quote": ALO,
    "payments.charge": AMO,
    "payments.refund": ALO,
    "mail.send": ALO,
    "mail.fanout": ALO,
    "audit.log": ALO,
    "quote.branch": ALO,  # one per branch of the ``quotes`` fan-out
    "child.work": ALO,  # the child job's one tool
    "mail.link": ALO,  # mails a callback's token (the driver answers it like a person clicking)
    "run.tick": ALO,  # one per run of an order that continues as new before its work
}
LINK_ANSWER = {"clicked": True}  # what the driver answers every callback with
CHILD_JOB_TYPE = "order_child"
RECIPIENTS = ("ana", "bo", "chloé", "dmitri")  # the fan-out step's set
BIG_ERROR_CHARS = 250_000  # "~200 KB": with its args the recorded error is past the 400 KB item limit
# Injected infrastructure faults can fail a step attempt; they must never exhaust its retries.
STEP_RETRY = RetryPolicy(
    max_attempts=12,
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=1.5,
    max_interval=timedelta(seconds=2),
)

Variant = Literal["ok", "reject", "flaky"]
InJobCancel = Literal["last_step", "compensating"]


class ChaosOrder(BaseModel):
    n: int
    variant: Variant = "ok"
    work_steps: int = 1
    nap_ms: int = 0
    note: Any = None
    memo: bool = False
    big_error: Literal["tool", "step"] | None = None
    fanout: bool = False
    bare_except: bool = False
    refund: bool = False
    saga_values: bool = False
    cancel_in: InJobCancel | None = None
    branches: int = 0  # a ``quotes`` fan-out of that many branches (at most 2 at a time); 0: none
    child: bool = False  # a child job (``order_child``) does part of the work
    link: bool = False  # a callback (``ctx.callback``) whose token is mailed and answered
    # ``ctx.continue_as_new``: the order first runs ``runs`` short runs (one ``run.tick`` each),
    # carrying ``run`` (a counter) and ``ticks`` (each run's tool result) as its state.
    runs: int = 0
    run: int = 0
    ticks: list[str] = []


class ChaosResult(BaseModel):
    reserved: str
    approval: dict[str, Any]
    shipping: dict[str, Any]
    work: list[str]
    charged: str
    notified: str
    note: Any = None
    memo: Any = None
    fanout: dict[str, str] | None = None
    audit: str | None = None
    quotes: list[str] | None = None
    child: str | None = None
    link: Any = None
    ticks: list[str] | None = None  # each earlier run's ``run.tick`` result, carried to the last run
    runs: int | None = None  # the counter carried over the runs: how many came before the last


class Rejected(NonRetryableError):
    """The approval said no: the job fails on purpose and its compensation runs."""

    def __init__(self, n: int) -> None:
        self.n = n
        super().__init__(f"order {n} was rejected by its approver")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.n,))


class UpstreamReset(ConnectionError):
    """The flaky quote service dropped the connection before doing anything."""


class Overflowing(RuntimeError):
    """A step's own error with a message far bigger than an item may hold."""


class _ExternalServices:
    """Where the tools report their calls; set once per process by ``configure``."""

    ledger: JsonLines | None = None
    calls = 0
    lock = threading.Lock()


def configure(ledger_path: str | Path) -> None:
    """Point the tools at the run's external ledger (each worker process calls this once)."""
    _ExternalServices.ledger = JsonLines(ledger_path)


def call_service(
    effect: str,
    key: str,
    job_id: str,
    step_id: str,
    semantics: str,
    reachable: bool = True,
    arg: str | None = None,
    error_chars: int = 0,
    cancel: str | None = None,
) -> str:
    """One real call of an external service: reported to the external ledger, then answered.

    ``cancel`` names the moment when the service (a user, elsewhere) asks for the job's
    cancellation while this call runs: the ask is reported to the ledger too.
    """
    ledger = _ExternalServices.ledger
    if ledger is None:
        raise RuntimeError("aetheris_infra.chaos.app.configure(ledger_path) was not called")
    with _ExternalServices.lock:
        _ExternalServices.calls += 1
        number = _ExternalServices.calls
    answer = f"{effect}#{os.getpid()}.{number}"
    ledger.append(
        {
            "key": key,
            "effect": effect,
            "semantics": semantics,
            "job": job_id,
            "step": step_id,
            "arg": arg,
            "pid": os.getpid(),
            "t": time.time(),
            "ok": reachable,
            "result": answer if reachable else None,
        }
    )
    if not reachable:
        raise UpstreamReset(f"{effect} reset the connection" + "!" * error_chars)
    if cancel is not None:
        request_cancel(job_id, cancel, ledger)
    # A few milliseconds of "network": widens the windows a kill or a pause can land in.
    time.sleep((zlib.crc32(key.encode()) % 20) / 1000)
    return answer


def request_cancel(job_id: str, moment: str, ledger: JsonLines) -> None:
    """Cancel the job through the hosting runtime, retried over injected errors; reported."""
    outcome = "failed"
    for attempt in range(10):
        try:
            hosting.runtime().cancel(job_id)
        except JobFinished:
            outcome = "refused"
        except (ClientError, BotoCoreError):
            time.sleep(0.02 * (attempt + 1))
            continue
        else:
            outcome = "accepted"
        break
    ledger.append({"cancel": moment, "job": job_id, "outcome": outcome, "pid": os.getpid(), "t": time.time()})


def _tool(
    sctx: StepContext,
    name: str,
    reachable: bool = True,
    arg: str | None = None,
    error_chars: int = 0,
    cancel: str | None = None,
) -> str:
    semantics = TOOLS[name]
    key = sctx.idempotency_key(name)
    args = (name, key, sctx.job_id, sctx.step_id, semantics.value, reachable, arg, error_chars, cancel)
    result: str = sctx.tool(name, call_service, *args, semantics=semantics)
    return result


def reserve(sctx: StepContext, order: ChaosOrder) -> str:
    return _tool(sctx, "inventory.reserve")


def release(sctx: StepContext, order: ChaosOrder) -> str:
    asks = order.cancel_in == "compensating" and sctx.attempt == 1
    return _tool(sctx, "inventory.release", cancel="compensating" if asks else None)


def work(sctx: StepContext, order: ChaosOrder, index: int) -> str:
    token = sctx.uuid()
    first = index == 0 and sctx.attempt == 1
    if first and order.big_error == "step":
        raise Overflowing("the step's own error: " + "?" * BIG_ERROR_CHARS)
    fails = first and (order.variant == "flaky" or order.big_error == "tool")
    chars = BIG_ERROR_CHARS if order.big_error == "tool" else 0
    return f"{_tool(sctx, 'quote', reachable=not fails, error_chars=chars)}|{token}"


def fan_out(sctx: StepContext, order: ChaosOrder) -> dict[str, str]:
    """One call per recipient of a set, in another order on each attempt; the first attempt breaks."""
    recipients = sorted(set(RECIPIENTS), reverse=sctx.attempt % 2 == 0)
    answers = {}
    for count, who in enumerate(recipients):
        if sctx.attempt == 1 and count == 2:
            raise UpstreamReset("the mail relay dropped the batch half-way")
        answers[who] = _tool(sctx, "mail.fanout", arg=who)
    return answers


def audit(sctx: StepContext, order: ChaosOrder) -> str:
    # Its first attempt fails: the retry is due later, so a tick that comes early suspends the job
    # *before* anything is committed — the suspension the bare except around it swallows.
    return _tool(sctx, "audit.log", reachable=sctx.attempt > 1)


def charge(sctx: StepContext, order: ChaosOrder) -> str:
    return _tool(sctx, "payments.charge")


def refund(sctx: StepContext, order: ChaosOrder) -> str:
    return _tool(sctx, "payments.refund")


def notify(sctx: StepContext, order: ChaosOrder, charged: str) -> str:
    asks = order.cancel_in == "last_step" and sctx.attempt == 1
    return _tool(sctx, "mail.send", cancel="last_step" if asks else None)


def quote_branch(sctx: StepContext, index: int) -> str:
    """One branch of the ``quotes`` fan-out: its own step, its own key, its own retries."""
    return _tool(sctx, "quote.branch", arg=str(index))


def mail_link(sctx: StepContext, token: str) -> str:
    """Mail the callback's link: the external ledger line carries the token (``arg``)."""
    return _tool(sctx, "mail.link", arg=token)


def run_tick(sctx: StepContext, run: int) -> str:
    """The one tool call of each short run before an order continues as new."""
    return _tool(sctx, "run.tick", arg=str(run))


def child_work(sctx: StepContext, n: int) -> str:
    return _tool(sctx, "child.work", arg=str(n))


app = App("chaos")


@app.job(CHILD_JOB_TYPE)
def order_child(ctx: JobContext, n: int) -> str:
    return ctx.step(child_work, n, retry=STEP_RETRY)


def _audited(ctx: JobContext, order: ChaosOrder) -> str:
    try:
        return ctx.step(audit, order, retry=STEP_RETRY)
    except:  # noqa: E722 - on purpose: a job function that swallows whatever ctx.step raises
        return "swallowed"


@app.job(JOB_TYPE)
def order_job(ctx: JobContext, order: ChaosOrder) -> ChaosResult:
    if order.run < order.runs:  # a short run, then the same job goes on on a fresh log
        tick = ctx.step(run_tick, order.run, retry=STEP_RETRY)
        ctx.continue_as_new(order.model_copy(update={"run": order.run + 1, "ticks": [*order.ticks, tick]}))
    if order.saga_values:
        ctx.uuid()
    reserved = ctx.step(reserve, order, compensate=release, retry=STEP_RETRY)
    if order.saga_values:
        ctx.now()
    approval = ctx.wait_for_signal("approve")
    shipping = ctx.wait_for_signal("ship")
    memo = ctx.wait_for_signal(MEMO) if order.memo else None
    if not approval.get("approved"):
        raise Rejected(order.n)
    done = [ctx.step(work, order, i, name=f"work-{i}", retry=STEP_RETRY) for i in range(order.work_steps)]
    fanned = ctx.step(fan_out, order, name="fan-out", retry=STEP_RETRY) if order.fanout else None
    quotes = None
    if order.branches:
        quotes = ctx.map(
            quote_branch, range(order.branches), max_concurrency=2, retry=STEP_RETRY, name="quotes"
        )
    child = ctx.child(CHILD_JOB_TYPE, order.n) if order.child else None
    link = None
    if order.link:
        callback = ctx.callback("link", timeout=timedelta(hours=1))
        ctx.step(mail_link, callback.token, retry=STEP_RETRY)
        link = callback.wait()
    undo_charge = refund if order.refund else None
    charged = ctx.step(charge, order, retry=STEP_RETRY, compensate=undo_charge)
    if order.saga_values:
        ctx.uuid()
    ctx.sleep(timedelta(milliseconds=order.nap_ms))
    notified = ctx.step(notify, order, charged, retry=STEP_RETRY)
    audited = _audited(ctx, order) if order.bare_except else None  # last: nothing after it would tell
    return ChaosResult(
        reserved=reserved,
        approval=approval,
        shipping=shipping,
        work=done,
        charged=charged,
        notified=notified,
        note=order.note,
        memo=memo,
        fanout=fanned,
        audit=audited,
        quotes=quotes,
        child=child,
        link=link,
        ticks=order.ticks if order.runs else None,
        runs=order.run if order.runs else None,
    )
