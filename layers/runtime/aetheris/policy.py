"""Retry policies and effect semantics: what the caller of a step or tool asks the runtime for."""

from __future__ import annotations

import enum
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator


class EffectSemantics(enum.StrEnum):
    AT_LEAST_ONCE = "AT_LEAST_ONCE"
    """After a crash between call and record, call again with the same idempotency key."""
    AT_MOST_ONCE = "AT_MOST_ONCE"
    """Never call twice: that crash window ends the step with ``EffectOutcomeUnknown``."""


class RetryPolicy(BaseModel):
    """How often and how soon a failed step (or tool call) is tried again.

    The delay before attempt ``n + 1`` is ``initial_interval * backoff_coefficient ** (n - 1)``,
    capped at ``max_interval``, then moved by up to ``± jitter`` of itself (0 disables jitter).
    Errors whose class is in ``non_retryable`` (or derives from ``NonRetryableError``) fail at once.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    max_attempts: int = Field(default=3, ge=1)
    initial_interval: timedelta = timedelta(seconds=1)
    backoff_coefficient: float = Field(default=2.0, ge=1.0)
    max_interval: timedelta = timedelta(minutes=5)
    jitter: float = Field(default=0.1, ge=0.0, le=1.0)
    non_retryable: tuple[type[BaseException], ...] = ()

    @model_validator(mode="after")
    def _intervals_are_positive(self) -> RetryPolicy:
        if self.initial_interval < timedelta(0) or self.max_interval < self.initial_interval:
            raise ValueError("need 0 <= initial_interval <= max_interval")
        return self

    def delay_before(self, attempt: int, unit_random: float) -> timedelta:
        """Delay before ``attempt`` (2 = the first retry); ``unit_random`` in [0, 1) drives jitter."""
        base = self.initial_interval.total_seconds() * self.backoff_coefficient ** max(0, attempt - 2)
        capped = min(base, self.max_interval.total_seconds())
        spread = capped * self.jitter * (2 * unit_random - 1)
        return timedelta(seconds=max(0.0, capped + spread))

    def gives_up_on(self, error: BaseException, attempt: int) -> bool:
        from aetheris.errors import NonRetryableError

        if isinstance(error, (NonRetryableError, *self.non_retryable)):
            return True
        return attempt >= self.max_attempts


DEFAULT_STEP_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)
