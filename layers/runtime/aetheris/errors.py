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
from contextlib import suppress
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
    """The same operation ended its tick without an outcome too often (workers died on it, or the
    tick failed the same way every time): the job is failed instead of looped."""

    def __init__(self, job_id: str, seq: int, claims: int, last_error: str | None = None) -> None:
        self.job_id, self.seq, self.claims, self.last_error = job_id, seq, claims, last_error
        cause = (
            f"the last one failed with: {last_error}"
            if last_error
            else "the operation there crashes or hangs its worker"
        )
        super().__init__(
            f"job {job_id}: {claims} workers claimed slot {seq} and none committed; {cause}. "
            f"See the trace for the last operation started."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.seq, self.claims, self.last_error))


class EffectMismatch(NonRetryableError):
    """A tool call does not match the call recorded at its position in the step (another tool or
    other arguments): it is refused rather than given another call's result."""

    def __init__(self, idempotency_key: str, recorded: str, requested: str) -> None:
        self.idempotency_key, self.recorded, self.requested = idempotency_key, recorded, requested
        super().__init__(
            f"tool call {idempotency_key} was recorded as {recorded}, and this attempt asks for "
            f"{requested}. A step must make its tool calls in the same order with the same arguments "
            f"on every attempt: sort what you iterate over (a set's order changes between processes), "
            f"or give each call its own tool name."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.idempotency_key, self.recorded, self.requested))


class StepContextClosed(NonRetryableError):
    """A ``StepContext`` was used after its step attempt ended (kept and called from elsewhere)."""

    def __init__(self, step: str, call: str) -> None:
        self.step, self.call = step, call
        super().__init__(
            f"{call} was called on the StepContext of step {step!r} after that step attempt ended; "
            f"a StepContext is valid only inside its own step: call the tool from a step of its own"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.step, self.call))


class InvalidStep(NonRetryableError):
    """``ctx.step`` was given something the runtime cannot run as a step (e.g. a generator)."""


class ContinueAsNewError(NonRetryableError):
    """``ctx.continue_as_new(state)`` cannot continue the job: the state does not fit the job's input
    model or cannot be stored, or it was called where it cannot work (inside a step body)."""

    def __init__(self, job_id: str, reason: str) -> None:
        self.job_id, self.reason = job_id, reason
        super().__init__(f"job {job_id}: ctx.continue_as_new: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.job_id, self.reason))


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


class ChildJobFailed(NonRetryableError):
    """A child job (``ctx.child``) ended FAILED or CANCELLED; the parent may catch it."""

    def __init__(self, child_id: str, status: str, error_type: str, message: str) -> None:
        self.child_id, self.status = child_id, status
        self.error_type, self.error_message = error_type, message
        super().__init__(f"child job {child_id} ended {status}: {error_type.rpartition('.')[2]}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.child_id, self.status, self.error_type, self.error_message))


class StepFailedError(NonRetryableError):
    """Stand-in raised on replay when a recorded error's own class cannot be rebuilt."""

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type, self.message = error_type, message
        super().__init__(f"{error_type}: {message}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.error_type, self.message))


class Suspend(BaseException):
    """Unwinds the job function: this invocation's one operation is done (committed, or not due yet).

    ``come_back`` says when the job needs its next tick (internal: ``aetheris._engine.come_back``).
    Once raised, every later durable operation of the same invocation raises it again, so a job
    function that catches it (a bare ``except:``) can never get anything else committed.
    """

    def __init__(self, come_back: object = None) -> None:
        self.come_back = come_back
        super().__init__("the invocation's operation is done; the job continues in its next tick")


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
    # Where the whole message is kept when ``message`` was truncated (a payload reference), if anywhere.
    full: str | None = None

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        """The error as recorded: bounded, so that recording it can never fail for its size.

        A message over ``MAX_MESSAGE_CHARS`` is cut with a marker giving its full length (the full
        text can be kept elsewhere, see ``full``); constructor arguments are kept only while they
        are JSON and small, else the error is rebuilt on replay as ``StepFailedError``.
        """
        recorded = getattr(exc, RECORDED_AS, None)
        if isinstance(recorded, ErrorInfo):
            return recorded  # re-raised from the log: recorded as it was the first time (and its full text)
        kind = type(exc)
        type_name = f"{kind.__module__}.{kind.__qualname__}"[:MAX_TYPE_CHARS]
        message = _message_of(exc)
        retryable = not isinstance(exc, NonRetryableError)
        reduced = exc.__reduce__()
        args = list(reduced[1]) if isinstance(reduced, tuple) and len(reduced) > 1 else list(exc.args)
        args_json = _storable_args(args)
        if args_json is None or len(args_json) > MAX_ARGS_CHARS or len(message) > MAX_MESSAGE_CHARS:
            return cls(type=type_name, message=truncate(message), retryable=retryable)
        return cls(type=type_name, message=message, retryable=retryable, args=args)


# The attribute a rebuilt error carries its record in.
RECORDED_AS = "_aetheris_recorded"
# Bounds of a recorded error: a ~200 KB exception message must not make its record too big to store.
MAX_MESSAGE_CHARS = 8 * 1024
MAX_ARGS_CHARS = 4 * 1024
MAX_TYPE_CHARS = 512
TRUNCATED = "... [truncated: {total} characters in all]"


def truncate(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to about ``limit`` characters with a marker saying how long it was."""
    if len(text) <= limit:
        return text
    return text[:limit] + TRUNCATED.format(total=len(text))


def _storable_args(args: list[Any]) -> str | None:
    """The arguments as JSON if they can be stored and read back (``_values``), else ``None``."""
    from aetheris._values import UnstorableValue, check_storable

    try:
        check_storable(args, "error.args")
        return json.dumps(args, allow_nan=False)
    except (UnstorableValue, TypeError, ValueError, RecursionError):
        return None


def _message_of(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception as broken:  # noqa: BLE001 - an error whose __str__ fails is still recorded
        return f"<{type(exc).__qualname__}: str() failed: {type(broken).__name__}>"
    # A lone surrogate cannot be encoded as UTF-8, so it could never be written: escape it.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def rebuild_error(info: ErrorInfo) -> Exception:
    """The recorded error as an exception of its original class where that class can be rebuilt.

    The class is imported and called with the recorded constructor arguments; if that fails or does
    not reproduce the message, a ``StepFailedError`` carries the recorded type and message. Either
    way the exception keeps its record, so recording it again (the job failing with it) loses
    nothing that was cut, nor where the whole text is kept.
    """
    rebuilt = _rebuild(info)
    with suppress(AttributeError):  # an exception class with __slots__ keeps no record
        setattr(rebuilt, RECORDED_AS, info)
    return rebuilt


def _rebuild(info: ErrorInfo) -> Exception:
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
