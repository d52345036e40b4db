"""The runtime's own store calls made under the job function, kept apart from the job's errors.

The job function and step bodies run user code that may catch ``Exception``. If a throttled inbox
query or a failed commit surfaced there as a ``ClientError``, the job would take it for its own
failure: fail, compensate, or carry on down a path replay would never take. So while user code is
on the stack, a store error travels as ``StoreFailure`` (a ``BaseException`` nothing in user code
catches); the invocation turns it back into the original error at its edge, the worker gives the
slot back and the message is redelivered: a store hiccup costs a retry, never the job.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from botocore.exceptions import BotoCoreError, ClientError

from aetheris._store.dynamo import TransactionConflict


class StoreFailure(BaseException):
    def __init__(self, error: Exception) -> None:
        self.error = error
        super().__init__(f"runtime store call failed: {error}")


_STORE_ERRORS = (BotoCoreError, ClientError, TransactionConflict)


class _RuntimeIO:
    """``runtime_io()``'s block: stateless, so one instance serves every ``with`` (a replayed step
    enters one to read its result; a ``@contextmanager`` generator per step cost ≈ 2 µs)."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> None:
        if isinstance(error, _STORE_ERRORS):
            raise StoreFailure(error) from error


_RUNTIME_IO = _RuntimeIO()


def runtime_io() -> AbstractContextManager[None]:
    """Raise a failed DynamoDB or SQS call of the runtime as ``StoreFailure``."""
    return _RUNTIME_IO
