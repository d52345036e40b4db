"""Fan-out's public vocabulary: completion rules, the batch result, and ``FanOutFailed``.

``ctx.map(fn, items)`` and ``ctx.parallel([branch, ...])`` run each item / branch as its own durable
step on its own invocation. Without ``completion=`` they return the plain list of results in input
order, and the first branch to fail for good fails the whole (its error is raised). With
``completion=Completion(...)`` — the rules of the Lambda durable functions SDK — they return a
``BatchResult`` saying what each branch did and why the whole stopped, or raise ``FanOutFailed``
carrying it when the rule is breached.

Once the rule is decided, no branch is started or retried any more (those not run are
``CANCELLED``); branches already running finish their current attempt before the job goes on, so
everything a branch committed is known to the job — and undone by its compensation if the job
later fails.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aetheris.errors import ErrorInfo, NonRetryableError, rebuild_error


class Completion(BaseModel):
    """When a fan-out is done. Unset fields do not constrain; ``Completion()`` runs every branch
    and returns every outcome, whatever failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_successful: int | None = Field(default=None, ge=1)
    tolerated_failure_count: int | None = Field(default=None, ge=0)
    tolerated_failure_percentage: float | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="after")
    def _finite(self) -> Completion:
        percentage = self.tolerated_failure_percentage
        if percentage is not None and percentage != percentage:  # NaN
            raise ValueError("tolerated_failure_percentage must be a number from 0 to 100")
        return self


class BranchStatus(enum.StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # never run, or not retried, once the rule was decided (or on a cancel)


class CompletionReason(enum.StrEnum):
    ALL_COMPLETED = "ALL_COMPLETED"
    MIN_SUCCESSFUL_REACHED = "MIN_SUCCESSFUL_REACHED"
    FAILURE_TOLERANCE_EXCEEDED = "FAILURE_TOLERANCE_EXCEEDED"
    FAILED = "FAILED"  # no completion rule: a branch failed
    CANCELLED = "CANCELLED"  # the job was cancelled while the branches ran


class BatchItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    status: BranchStatus
    result: Any = None
    error: ErrorInfo | None = None


class BatchResult(BaseModel):
    """Every branch's outcome, in input order, and why the fan-out ended."""

    model_config = ConfigDict(frozen=True)

    items: list[BatchItem]
    reason: CompletionReason
    first_failure: int | None = None  # the branch that failed first, in commit order

    @property
    def succeeded(self) -> list[BatchItem]:
        return [item for item in self.items if item.status is BranchStatus.SUCCEEDED]

    @property
    def failed(self) -> list[BatchItem]:
        return [item for item in self.items if item.status is BranchStatus.FAILED]

    @property
    def cancelled(self) -> list[BatchItem]:
        return [item for item in self.items if item.status is BranchStatus.CANCELLED]

    def results(self) -> list[Any]:
        """The succeeded branches' results, in input order."""
        return [item.result for item in self.succeeded]

    def errors(self) -> list[Exception]:
        """The failed branches' errors (rebuilt), in input order."""
        return [rebuild_error(item.error) for item in self.failed if item.error is not None]

    @property
    def completed(self) -> bool:
        """False when the rule was breached."""
        return self.reason in (CompletionReason.ALL_COMPLETED, CompletionReason.MIN_SUCCESSFUL_REACHED)


class FanOutFailed(NonRetryableError):
    """A fan-out's completion rule was breached; ``batch`` says what each branch did."""

    def __init__(self, name: str, batch: BatchResult | dict[str, Any] | str) -> None:
        if isinstance(batch, str):
            batch = json.loads(batch)
        self.name = name
        self.batch = batch if isinstance(batch, BatchResult) else BatchResult.model_validate(batch)
        counts = f"{len(self.batch.succeeded)} succeeded, {len(self.batch.failed)} failed"
        first = self.batch.first_failure
        cause = ""
        if first is not None and self.batch.items[first].error is not None:
            error = self.batch.items[first].error
            assert error is not None
            cause = f"; first failure: branch {first}: {error.type.rpartition('.')[2]}: {error.message}"
        super().__init__(
            f"fan-out {name!r} failed: {self.batch.reason.value} ({counts}, "
            f"{len(self.batch.cancelled)} cancelled){cause}"[:4000]
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.name, self.batch.model_dump_json()))
