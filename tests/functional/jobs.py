"""Jobs used by the functional tests. Every step and tool body counts its real executions."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import timedelta

from pydantic import BaseModel

from aetheris import App, EffectSemantics, JobContext, RetryPolicy, StepContext


class Calls:
    """Counts of real executions, and the idempotency keys each effect callee saw."""

    def __init__(self) -> None:
        self.steps: Counter[str] = Counter()
        self.effects: Counter[str] = Counter()
        self.keys: defaultdict[str, list[str]] = defaultdict(list)
        self.lock = threading.Lock()

    def step(self, name: str) -> None:
        with self.lock:
            self.steps[name] += 1

    def effect(self, name: str, key: str) -> int:
        with self.lock:
            self.effects[name] += 1
            self.keys[name].append(key)
            return self.effects[name]


class Order(BaseModel):
    order_id: str
    amount: int


class Receipt(BaseModel):
    order_id: str
    charged: int
    charge_id: str


def build_app(calls: Calls, semantics: EffectSemantics = EffectSemantics.AT_LEAST_ONCE) -> App:
    app = App("tests")

    def numbered(sctx: StepContext, n: int) -> int:
        calls.step(f"s{n}")
        return n * 10

    @app.job("five_steps")
    def five_steps(ctx: JobContext, count: int) -> list[int]:
        return [ctx.step(numbered, n, name=f"s{n}") for n in range(1, count + 1)]

    def charge_api(order: Order, key: str) -> str:
        number = calls.effect("charge", key)
        return f"ch_{order.order_id}_{number}"

    def charge(sctx: StepContext, order: Order) -> Receipt:
        calls.step("charge")
        key = sctx.idempotency_key("payments.charge")
        charge_id = sctx.tool("payments.charge", charge_api, order, key, semantics=semantics)
        return Receipt(order_id=order.order_id, charged=order.amount, charge_id=charge_id)

    def confirm(sctx: StepContext, receipt: Receipt) -> str:
        calls.step("confirm")
        return f"confirmed {receipt.charge_id}"

    @app.job("payment")
    def payment(ctx: JobContext, order: Order) -> str:
        receipt = ctx.step(charge, order)
        return ctx.step(confirm, receipt)

    flaky_failures = {"left": 1}

    def flaky_api(key: str) -> str:
        calls.effect("flaky", key)
        if flaky_failures["left"] > 0:
            flaky_failures["left"] -= 1
            raise ConnectionError("upstream reset the connection")
        return "ok"

    def call_flaky(sctx: StepContext) -> str:
        calls.step("call_flaky")
        return sctx.tool("flaky", flaky_api, sctx.idempotency_key("flaky"))

    @app.job("flaky")
    def flaky(ctx: JobContext, _: None) -> str:
        return ctx.step(call_flaky, retry=RetryPolicy(max_attempts=3, initial_interval=timedelta(0)))

    return app
