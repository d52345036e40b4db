"""One tool call through the ledger: claim (or find it recorded) → call → record the outcome.

The same shape as every durable operation, for one effect: a recorded result is returned without
calling; otherwise the call is claimed (carrying its identity, so another call can never take its
record), made, and its result or error recorded. A failing call is retried by the tool's policy,
at most its attempts per step attempt (the ledger counts them, so a redelivered tick cannot add
more). Errors are recorded bounded (``records.Recorder``).

The crash points bracket the window this module exists for: ``before_effect`` (nothing claimed),
``after_effect`` (called, not recorded: the window AT_LEAST_ONCE re-enters with the same key and
AT_MOST_ONCE refuses) and ``after_record``.

The loop is written once, as a generator that yields each call to make; ``run_tool`` drives it for
plain functions and ``run_tool_async`` awaits ``async def`` tools.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python

from aetheris import _log_context, _serde
from aetheris._clock import to_millis
from aetheris._engine.store_io import runtime_io
from aetheris._previews import DEFAULT_REDACT_KEYS, preview_args, redact_positional
from aetheris._store.ledger import AlreadyRecorded, Attempt, Claimant, EffectRef, Exhausted, Identity
from aetheris.errors import NonRetryableError, rebuild_error
from aetheris.policy import NO_RETRY, EffectSemantics, RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation

log = _log_context.logger("aetheris.effects")
# A claim carries its arguments' preview: kept well inside one write unit with the rest of the claim.
PREVIEW_BYTES = 512


@dataclass(frozen=True)
class ToolCall:
    ref: EffectRef
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    semantics: EffectSemantics
    retry: RetryPolicy | None
    step_attempt: int


class _Call:
    """Yielded by the loop: make this call now; the driver sends back its value or raises into it."""


_CALL = _Call()


def identity(
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    redact_keys: Iterable[str] = DEFAULT_REDACT_KEYS,
    fn: Callable[..., Any] | None = None,
) -> Identity:
    """The call's identity: the tool name and its arguments as JSON (objects by their type name),
    and a bounded, redacted preview of the arguments for the trace (``_previews.preview_args``).

    With ``fn``, a positional argument is redacted in the preview when its *parameter's* name is a
    secret's (``call_api(url, api_key)`` called as ``call_api(u, k)``): key names cover positional
    secrets too."""
    plain = {"args": _plain(list(args)), "kwargs": _plain(kwargs)}
    canonical = json.dumps([name, plain], sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode("utf-8", "backslashreplace")).hexdigest()
    shown_args = redact_positional(fn, args, redact_keys) if fn is not None else args
    preview = preview_args(shown_args, kwargs, redact_keys, PREVIEW_BYTES)
    shown = canonical[len(name) + 3 : -1]
    describe = f"{name}({shown[:200]}{'...' if len(shown) > 200 else ''})"
    return Identity(
        digest=digest,
        describe=describe.encode("utf-8", "backslashreplace").decode(),
        preview=preview.encode("utf-8", "backslashreplace").decode(),
    )


def _plain(value: Any) -> Any:
    try:
        return to_jsonable_python(value, fallback=lambda v: f"<{type(v).__qualname__}>")
    except Exception:  # noqa: BLE001 - an argument that cannot even be described is named by its type
        return f"<{type(value).__qualname__}>"


def _loop(inv: Invocation, call: ToolCall) -> Generator[_Call, Any, Any]:
    services = inv.services
    ledger, clock, faults = services.ledger, services.clock, services.faults
    adapter = _serde.return_adapter(call.fn)
    policy = call.retry or NO_RETRY
    lease = inv.lease
    claimant = Claimant(seq=lease.seq, fence=lease.fence, worker_id=lease.worker_id)
    who = identity(call.ref.name, call.args, call.kwargs, services.settings.redact_keys, call.fn)
    budget = Attempt(step_attempt=call.step_attempt, max_failures=policy.max_attempts)
    while True:
        faults.reach("before_effect")
        with runtime_io():
            inv.keeper.ensure_valid()
            claim = ledger.claim(
                call.ref, claimant, call.semantics, to_millis(clock.now()), lease.lease_until_ms, who, budget
            )
        if isinstance(claim, AlreadyRecorded):
            services.telemetry.effect_deduplicated()
            with runtime_io():
                return _serde.load(services.payloads.text(claim.result), adapter)
        if isinstance(claim, Exhausted):
            raise rebuild_error(claim.error)  # as the last call raised it; not called again
        attempt = claim.failures + 1
        try:
            services.telemetry.effect_executed()
            value = yield _CALL
            text = _serde.dump(value, adapter, f"result of tool {call.ref.name}", services.payloads.limit)
        except Exception as error:
            info = inv.recorder.error(error)
            with runtime_io():
                ledger.record_failure(
                    call.ref, claimant, info, to_millis(clock.now()), call.step_attempt, attempt
                )
            if isinstance(error, NonRetryableError) or policy.gives_up_on(error, attempt):
                raise
            delay = policy.delay_before(attempt + 1, services.ids.random())
            # The error's type only: its message is the tool's text and may quote its arguments.
            log.info(
                "tool %s failed on call %s (%s); called again in %.3f s",
                call.ref.name,
                attempt,
                type(error).__name__,
                delay.total_seconds(),
                extra={"tool": call.ref.name, "tool_attempt": attempt},
            )
            clock.sleep(delay)
            continue
        faults.reach("after_effect")
        with runtime_io():
            # A big result goes to S3 before the ledger references it; a failed put retries the
            # tick, which finds the claim open (the after_effect window above).
            stored = services.payloads.offload(call.ref.job_id, text)
            ledger.record(call.ref, claimant, stored, to_millis(clock.now()))
        faults.reach("after_record")
        return _serde.load(text, adapter)


def run_tool(inv: Invocation, call: ToolCall) -> Any:
    loop = _loop(inv, call)
    try:
        next(loop)
        while True:
            try:
                value = call.fn(*call.args, **call.kwargs)
            except Exception as error:  # noqa: BLE001 - handed to the loop, which records it
                loop.throw(error)
            else:
                loop.send(value)
    except StopIteration as done:
        return done.value


async def run_tool_async(inv: Invocation, call: ToolCall) -> Any:
    loop = _loop(inv, call)
    try:
        next(loop)
        while True:
            try:
                value = await call.fn(*call.args, **call.kwargs)
            except Exception as error:  # noqa: BLE001 - handed to the loop, which records it
                loop.throw(error)
            else:
                loop.send(value)
    except StopIteration as done:
        return done.value
