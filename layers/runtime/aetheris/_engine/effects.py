"""One tool call through the ledger: claim (or find it recorded) → call → record the outcome.

The crash points bracket the window this module exists for: ``before_effect`` (nothing claimed),
``after_effect`` (called, not recorded: the window AT_LEAST_ONCE re-enters with the same key and
AT_MOST_ONCE refuses) and ``after_record``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aetheris import _serde
from aetheris._clock import to_millis
from aetheris._engine.store_io import runtime_io
from aetheris._store.ledger import AlreadyRecorded, Claimant, EffectRef
from aetheris.errors import ErrorInfo, PayloadTooLarge
from aetheris.policy import NO_RETRY, EffectSemantics, RetryPolicy

if TYPE_CHECKING:
    from aetheris._engine.invocation import Invocation


def run_tool(
    inv: Invocation,
    ref: EffectRef,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    semantics: EffectSemantics,
    retry: RetryPolicy | None,
) -> Any:
    services = inv.services
    ledger, clock, faults = services.ledger, services.clock, services.faults
    adapter = _serde.return_adapter(fn)
    policy = retry or NO_RETRY
    lease = inv.lease
    claimant = Claimant(seq=lease.seq, fence=lease.fence, worker_id=lease.worker_id)
    attempt = 1
    while True:
        faults.reach("before_effect")
        with runtime_io():
            inv.keeper.ensure_valid()
            claim = ledger.claim(ref, claimant, semantics, to_millis(clock.now()), lease.lease_until_ms)
        if isinstance(claim, AlreadyRecorded):
            with runtime_io():
                return _serde.load(services.payloads.text(claim.result), adapter)
        try:
            value = fn(*args, **kwargs)
            text = _serde.dump(value, adapter, f"result of tool {ref.name}", services.payloads.limit)
        except Exception as error:
            with runtime_io():
                ledger.record_failure(ref, claimant, ErrorInfo.of(error), to_millis(clock.now()))
            if isinstance(error, PayloadTooLarge) or policy.gives_up_on(error, attempt):
                raise
            attempt += 1
            clock.sleep(policy.delay_before(attempt, services.ids.random()))
            continue
        faults.reach("after_effect")
        with runtime_io():
            # A big result goes to S3 before the ledger references it; a failed put retries the
            # tick, which finds the claim open (the after_effect window above).
            stored = services.payloads.offload(ref.job_id, text)
            ledger.record(ref, claimant, stored, to_millis(clock.now()))
        faults.reach("after_record")
        return _serde.load(text, adapter)
