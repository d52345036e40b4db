"""The public surface is pinned: nothing leaks into it or vanishes from it by accident."""

from __future__ import annotations

import aetheris

EXPECTED = {
    "CRASH_POINTS",
    "AetherisError",
    "App",
    "BatchItem",
    "BatchResult",
    "BranchStatus",
    "ChildJobFailed",
    "Completion",
    "CompletionReason",
    "ContinueAsNewError",
    "FanOutFailed",
    "Callback",
    "CallbackFailed",
    "CompensationFailed",
    "CrashPoint",
    "DeterminismViolation",
    "EffectOutcomeUnknown",
    "EffectSemantics",
    "EffectState",
    "ErrorInfo",
    "Event",
    "EventType",
    "IdempotencyConflict",
    "JobContext",
    "JobDefinition",
    "JobFinished",
    "JobNotFound",
    "JobStatus",
    "JobView",
    "LeaseLost",
    "NonRetryableError",
    "NondeterminismError",
    "PayloadCorrupted",
    "PayloadTooLarge",
    "RetryPolicy",
    "Runtime",
    "Settings",
    "SlotState",
    "StartedJob",
    "StepContext",
    "StepFailedError",
    "StepTimeout",
    "Suspend",
    "TickOutcome",
    "Trace",
    "UnknownJobType",
    "UntrackedEffect",
    "WaitTimeout",
    "WorkerCrashLoop",
    "EffectMismatch",
    "StepContextClosed",
    "InvalidStep",
    "UnstorableValue",
    "build_trace",
}


def test_public_api_exports_exactly_the_contract() -> None:
    assert set(aetheris.__all__) == EXPECTED
    assert all(hasattr(aetheris, name) for name in EXPECTED)


def test_public_api_control_flow_cannot_be_swallowed_by_except_exception() -> None:
    assert not issubclass(aetheris.Suspend, Exception)
    assert not issubclass(aetheris.LeaseLost, Exception)
    assert issubclass(aetheris.NondeterminismError, aetheris.AetherisError)
    assert issubclass(aetheris.EffectOutcomeUnknown, aetheris.NonRetryableError)
