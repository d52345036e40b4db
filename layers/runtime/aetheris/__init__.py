"""Aetheris: durable execution for AI agents on AWS Lambda, DynamoDB and SQS.

This module is the public API; everything else in the package is internal.
"""

# Programming model
# Configuration and runtime
from aetheris._engine.faults import CRASH_POINTS, CrashPoint
from aetheris._engine.guard import DeterminismViolation
from aetheris._engine.job_context import JobContext
from aetheris._engine.step_context import StepContext
from aetheris._engine.worker import TickOutcome
from aetheris._values import UnstorableValue
from aetheris.app import App, JobDefinition
from aetheris.callbacks import Callback, CallbackFailed
from aetheris.config import Settings

# Errors
from aetheris.errors import (
    AetherisError,
    ChildJobFailed,
    CompensationFailed,
    ContinueAsNewError,
    EffectMismatch,
    EffectOutcomeUnknown,
    ErrorInfo,
    IdempotencyConflict,
    InvalidStep,
    JobFinished,
    JobNotFound,
    LeaseLost,
    NondeterminismError,
    NonRetryableError,
    PayloadCorrupted,
    PayloadTooLarge,
    StepContextClosed,
    StepFailedError,
    StepTimeout,
    Suspend,
    UnknownJobType,
    UntrackedEffect,
    WaitTimeout,
    WorkerCrashLoop,
)

# The log
from aetheris.events import EffectState, Event, EventType, JobStatus, SlotState
from aetheris.fanout import (
    BatchItem,
    BatchResult,
    BranchStatus,
    Completion,
    CompletionReason,
    FanOutFailed,
)
from aetheris.policy import EffectSemantics, RetryPolicy
from aetheris.runtime import JobView, Runtime, StartedJob
from aetheris.trace import Trace, build_trace

__all__ = [
    "CRASH_POINTS",
    "AetherisError",
    "App",
    "BatchItem",
    "BatchResult",
    "BranchStatus",
    "Callback",
    "CallbackFailed",
    "ChildJobFailed",
    "CompensationFailed",
    "Completion",
    "CompletionReason",
    "ContinueAsNewError",
    "CrashPoint",
    "DeterminismViolation",
    "EffectMismatch",
    "EffectOutcomeUnknown",
    "EffectSemantics",
    "EffectState",
    "ErrorInfo",
    "Event",
    "EventType",
    "FanOutFailed",
    "IdempotencyConflict",
    "InvalidStep",
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
    "StepContextClosed",
    "StepFailedError",
    "StepTimeout",
    "Suspend",
    "TickOutcome",
    "Trace",
    "UnknownJobType",
    "UnstorableValue",
    "UntrackedEffect",
    "WaitTimeout",
    "WorkerCrashLoop",
    "build_trace",
]
