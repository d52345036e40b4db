"""The error hierarchy: one root, classified by what the invocation boundary does with each class.

* ``AetherisError`` subclasses that are plain ``Exception`` are *retryable* unless they derive from
  ``NonRetryableError``, which fails the job (compensations run, when they exist).
* ``NondeterminismError`` parks the job as ``FAILED`` with the divergence point; it is never retried.
* ``Suspend`` and ``LeaseLost`` are control flow. They derive from ``BaseException`` so that a
  user's ``except Exception`` can never swallow them.

Errors carry their data, build their own message and survive being stored in the log and
re-raised on replay (see ``ErrorInfo`` and ``rebuild_error``).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict


class AetherisError(Exception):
    """Root of every error the runtime raises."""


class NonRetryableError(AetherisError):
    """Raise (or subclass) this from a step to fail it at once, without further attempts."""


class NondeterminismError(NonRetryableError):
    """Replay asked for something other than what the log recorded at the same position."""

    def __init__(self, job_id: str, position: int, recorded: str, requested: str) -> None:
        self.job_id = job_id
        self.position = position
        self.recorded = recorded
        self.requested = requested
        super().__init__(
            f"job {job_id}: replay diverged at operation {position}: the log recorded {recorded}, "
            f"the code asked for {requested}. The job's code changed under a running job; deploy the "
            f"change as a new job version or restore the previous code."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.position, self.recorded, self.requested))


class EffectOutcomeUnknown(NonRetryableError):
    """An ``AT_MOST_ONCE`` effect was claimed but never recorded: it may or may not have happened."""

    def __init__(self, idempotency_key: str, claimed_by: str = "unknown") -> None:
        self.idempotency_key = idempotency_key
        self.claimed_by = claimed_by
        super().__init__(
            f"effect {idempotency_key} was started by worker {claimed_by} and never recorded; it is "
            f"AT_MOST_ONCE, so it is not called again. Check the callee for this idempotency key and "
            f"resolve it by hand."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.idempotency_key, self.claimed_by))


class PayloadTooLarge(NonRetryableError):
    """A value to be recorded is over the store's size limit."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        self.what, self.size, self.limit = what, size, limit
        super().__init__(f"{what} is {size} bytes serialized; the limit is {limit} bytes")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.what, self.size, self.limit))


class PayloadCorrupted(NonRetryableError):
    """An offloaded value read back from S3 is not what was stored (or cannot be fetched at all)."""

    def __init__(self, bucket: str, key: str, found: str) -> None:
        self.bucket, self.key, self.found = bucket, key, found
        super().__init__(
            f"payload s3://{bucket}/{key} is not what was recorded: found {found}. The object was "
            f"changed, replaced or removed after it was recorded; restore it (bucket versioning, a "
            f"backup) and redrive the job's message, or let the job fail."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.bucket, self.key, self.found))


class UnknownJobType(NonRetryableError):
    def __init__(self, job_type: str, known: list[str]) -> None:
        self.job_type, self.known = job_type, known
        super().__init__(f"no job type {job_type!r} is registered; known types: {', '.join(known) or 'none'}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_type, self.known))


class IdempotencyConflict(NonRetryableError):
    """The idempotency key was used before with a different job type or input."""

    def __init__(self, idempotency_key: str, job_id: str) -> None:
        self.idempotency_key, self.job_id = idempotency_key, job_id
        super().__init__(
            f"idempotency key {idempotency_key!r} already started job {job_id} with a different input"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.idempotency_key, self.job_id))


class UntrackedEffect(NonRetryableError):
    """A step reached the outside world without ``sctx.tool`` while the app is ``strict_effects``."""


class WaitTimeout(AetherisError):
    """``ctx.wait_for_signal`` reached its timeout before a signal arrived; the job may catch it."""

    def __init__(self, signal: str, deadline: str) -> None:
        self.signal, self.deadline = signal, deadline
        super().__init__(f"no signal {signal!r} arrived before {deadline}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.signal, self.deadline))


class StepTimeout(AetherisError):
    """The step ran past its timeout and was abandoned; retried like any retryable error."""

    def __init__(self, step: str, seconds: float) -> None:
        self.step, self.seconds = step, seconds
        super().__init__(f"step {step!r} ran past its timeout of {seconds:g} s and was abandoned")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step, self.seconds))


class CompensationFailed(NonRetryableError):
    """A compensation exhausted its retries: the saga stopped and needs an operator."""

    def __init__(self, step: str, error: str, not_run: list[str]) -> None:
        self.step, self.error, self.not_run = step, error, not_run
        super().__init__(
            f"compensation of step {step!r} failed for good ({error}); "
            f"not run: {', '.join(not_run) or 'none'}. "
            f"Undo these by hand: the job will not retry them."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step, self.error, self.not_run))


class WorkerCrashLoop(NonRetryableError):
    """Workers kept dying on the same operation (each took the slot over): the job is failed, not looped."""

    def __init__(self, job_id: str, seq: int, claims: int) -> None:
        self.job_id, self.seq, self.claims = job_id, seq, claims
        super().__init__(
            f"job {job_id}: {claims} workers claimed slot {seq} and none committed; the operation there "
            f"crashes or hangs its worker. See the trace for the last step started."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.seq, self.claims))


class JobNotFound(NonRetryableError):
    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job {job_id}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id,))


class JobFinished(NonRetryableError):
    """The job has already ended: it takes no more signals and cannot be cancelled."""

    def __init__(self, job_id: str, status: str) -> None:
        self.job_id, self.status = job_id, status
        super().__init__(f"job {job_id} is already {status}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.status))


class StepFailedError(NonRetryableError):
    """Stand-in raised on replay when a recorded error's own class cannot be rebuilt."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type, self.message = error_type, message
        super().__init__(f"{error_type}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error_type, self.message))


class Suspend(BaseException):
    """Unwinds the job function once this invocation's one operation has been committed."""


class LeaseLost(BaseException):
    """This worker's fence is stale: another worker owns the job now. Stop; never retry past it."""

    def __init__(self, job_id: str, detail: str) -> None:
        self.job_id, self.detail = job_id, detail
        super().__init__(f"job {job_id}: lease lost ({detail})")


class ErrorInfo(BaseModel):
    """An error as stored in the log: enough to re-raise it on replay with its type and message."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    retryable: bool = True
    args: list[Any] | None = None  # constructor arguments, when JSON-able: rebuilds the error exactly

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        kind = type(exc)
        reduced = exc.__reduce__()
        args = list(reduced[1]) if isinstance(reduced, tuple) and len(reduced) > 1 else list(exc.args)
        try:
            json.dumps(args)
        except (TypeError, ValueError):
            return cls(
                type=f"{kind.__module__}.{kind.__qualname__}",
                message=str(exc),
                retryable=not isinstance(exc, NonRetryableError),
            )
        return cls(
            type=f"{kind.__module__}.{kind.__qualname__}",
            message=str(exc),
            retryable=not isinstance(exc, NonRetryableError),
            args=args,
        )


def rebuild_error(info: ErrorInfo) -> Exception:
    """The recorded error as an exception of its original class where that class can be rebuilt.

    The class is imported and called with the recorded constructor arguments; if that fails or does
    not reproduce the message, a ``StepFailedError`` carries the recorded type and message.
    """
    module_name, _, qualname = info.type.rpartition(".")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
        if isinstance(target, type) and issubclass(target, Exception):
            rebuilt = target(*info.args) if info.args is not None else target(info.message)
            if str(rebuilt) == info.message:
                return rebuilt
    except (ImportError, AttributeError, TypeError, ValueError):
        pass
    return StepFailedError(info.type, info.message)
