"""The chaos jobs: every durable operation in one job type, each tool reporting its real calls.

``order`` reserves stock (an AT_LEAST_ONCE tool, compensated by a release), waits for two signals
(``approve`` and ``ship``; the driver sends them early, late, several times and in either order),
runs one to three work steps (a recorded ``sctx.uuid()`` and an AT_LEAST_ONCE quote; in the
``flaky`` variant the first work step fails its first attempt and is retried), charges (an
AT_MOST_ONCE tool), sleeps, and notifies (AT_LEAST_ONCE). The ``reject`` variant is refused by its
approval: the job fails after both waits, so both signals are still consumed, and the reserve's
compensation must run.

The tools stand for external services. Each real call appends one line to the *external ledger*
(a file outside the runtime) before it returns, with the idempotency key the step passes down, so
the checker can count real calls per key without trusting the runtime's own records. Each call's
answer is unique, so the checker can tell which call's result the job went on with.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from aetheris import App, EffectSemantics, JobContext, NonRetryableError, RetryPolicy, StepContext
from aetheris_infra.chaos.jsonl import JsonLines

ALO, AMO = EffectSemantics.AT_LEAST_ONCE, EffectSemantics.AT_MOST_ONCE
JOB_TYPE = "order"
SIGNALS = ("approve", "ship")
# Tool name → semantics: what the checker holds each key of that tool to.
TOOLS: dict[str, EffectSemantics] = {
    "inventory.reserve": ALO,
    "inventory.release": ALO,
    "quote": ALO,
    "payments.charge": AMO,
    "mail.send": ALO,
}
# Injected infrastructure faults can fail a step attempt; they must never exhaust its retries.
STEP_RETRY = RetryPolicy(
    max_attempts=12,
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=1.5,
    max_interval=timedelta(seconds=2),
)

Variant = Literal["ok", "reject", "flaky"]


class ChaosOrder(BaseModel):
    n: int
    variant: Variant = "ok"
    work_steps: int = 1
    nap_ms: int = 0


class ChaosResult(BaseModel):
    reserved: str
    approval: dict[str, Any]
    shipping: dict[str, Any]
    work: list[str]
    charged: str
    notified: str


class Rejected(NonRetryableError):
    """The approval said no: the job fails on purpose and its compensation runs."""

    def __init__(self, n: int) -> None:
        self.n = n
        super().__init__(f"order {n} was rejected by its approver")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.n,))


class UpstreamReset(ConnectionError):
    """The flaky quote service dropped the connection before doing anything."""


class _ExternalServices:
    """Where the tools report their calls; set once per process by ``configure``."""

    ledger: JsonLines | None = None
    calls = 0
    lock = threading.Lock()


def configure(ledger_path: str | Path) -> None:
    """Point the tools at the run's external ledger (each worker process calls this once)."""
    _ExternalServices.ledger = JsonLines(ledger_path)


def call_service(
    effect: str, key: str, job_id: str, step_id: str, semantics: str, reachable: bool = True
) -> str:
    """One real call of an external service: reported to the external ledger, then answered."""
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
            "pid": os.getpid(),
            "ok": reachable,
            "result": answer if reachable else None,
        }
    )
    if not reachable:
        raise UpstreamReset(f"{effect} reset the connection")
    # A few milliseconds of "network": widens the windows a kill or a pause can land in.
    time.sleep((zlib.crc32(key.encode()) % 20) / 1000)
    return answer


def _tool(sctx: StepContext, name: str, reachable: bool = True) -> str:
    semantics = TOOLS[name]
    key = sctx.idempotency_key(name)
    args = (name, key, sctx.job_id, sctx.step_id, semantics.value, reachable)
    result: str = sctx.tool(name, call_service, *args, semantics=semantics)
    return result


def reserve(sctx: StepContext, order: ChaosOrder) -> str:
    return _tool(sctx, "inventory.reserve")


def release(sctx: StepContext, order: ChaosOrder) -> str:
    return _tool(sctx, "inventory.release")


def work(sctx: StepContext, order: ChaosOrder, index: int) -> str:
    token = sctx.uuid()
    flaky = order.variant == "flaky" and index == 0 and sctx.attempt == 1
    return f"{_tool(sctx, 'quote', reachable=not flaky)}|{token}"


def charge(sctx: StepContext, order: ChaosOrder) -> str:
    return _tool(sctx, "payments.charge")


def notify(sctx: StepContext, order: ChaosOrder, charged: str) -> str:
    return _tool(sctx, "mail.send")


app = App("chaos")


@app.job(JOB_TYPE)
def order_job(ctx: JobContext, order: ChaosOrder) -> ChaosResult:
    reserved = ctx.step(reserve, order, compensate=release, retry=STEP_RETRY)
    approval = ctx.wait_for_signal("approve")
    shipping = ctx.wait_for_signal("ship")
    if not approval.get("approved"):
        raise Rejected(order.n)
    done = [ctx.step(work, order, i, name=f"work-{i}", retry=STEP_RETRY) for i in range(order.work_steps)]
    charged = ctx.step(charge, order, retry=STEP_RETRY)
    ctx.sleep(timedelta(milliseconds=order.nap_ms))
    notified = ctx.step(notify, order, charged, retry=STEP_RETRY)
    return ChaosResult(
        reserved=reserved, approval=approval, shipping=shipping, work=done, charged=charged, notified=notified
    )
