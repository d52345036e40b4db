"""A secret passed to a tool positionally is redacted in the trace by its parameter's name."""

from __future__ import annotations

import functools

from aetheris import App, JobContext, StepContext
from aetheris._previews import REDACTED, redact_positional
from aetheris.testing import LocalRuntime

SECRET = "sk-live-51Hxyz-never-shown"


def charge(amount: int, api_key: str, *rest: str) -> str:
    return f"charged {amount}"


def test_a_positional_secret_is_redacted_in_the_trace_and_never_stored() -> None:
    app = App("pay")

    def pay(sctx: StepContext) -> str:
        return sctx.tool("stripe.charge", charge, 42, SECRET, "memo")

    @app.job("pay")
    def job(ctx: JobContext, _: None) -> str:
        return ctx.step(pay)

    with LocalRuntime(app) as local:
        job_id = local.start("pay", None)
        local.wait(job_id)
        (effect,) = [e for op in local.trace(job_id).operations for e in op.effects if e.kind == "tool"]
        (entry,) = local.runtimes[0].effects(job_id)

    assert effect.input == {"args": [42, REDACTED, "memo"], "kwargs": {}}
    assert SECRET not in str(entry.get("args_preview")), "the secret never reaches the table"


def test_partials_and_callables_without_a_signature() -> None:
    bound = functools.partial(charge, 1)
    assert redact_positional(charge, (1, "k", "x")) == (1, REDACTED, "x")
    assert redact_positional(bound, ("k", "x")) == (REDACTED, "x")  # the parameters left to bind
    assert redact_positional(print, ("a",)) == ("a",)
