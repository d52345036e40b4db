"""RetryPolicy: the backoff schedule and when it gives up."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from aetheris import EffectOutcomeUnknown, NonRetryableError, RetryPolicy


def test_retry_policy_without_jitter_doubles_until_the_cap() -> None:
    policy = RetryPolicy(initial_interval=timedelta(seconds=1), max_interval=timedelta(seconds=5), jitter=0)
    delays = [policy.delay_before(attempt, 0.5).total_seconds() for attempt in range(2, 7)]
    assert delays == [1, 2, 4, 5, 5]


@pytest.mark.parametrize("unit_random", [0.0, 0.25, 0.999])
def test_retry_policy_jitter_stays_within_its_fraction(unit_random: float) -> None:
    policy = RetryPolicy(initial_interval=timedelta(seconds=10), jitter=0.2)
    delay = policy.delay_before(2, unit_random).total_seconds()
    assert 8.0 <= delay <= 12.0


def test_retry_policy_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert not policy.gives_up_on(ValueError("x"), 2)
    assert policy.gives_up_on(ValueError("x"), 3)


def test_retry_policy_non_retryable_errors_fail_at_once() -> None:
    policy = RetryPolicy(max_attempts=5, non_retryable=(KeyError,))
    assert policy.gives_up_on(KeyError("k"), 1)
    assert policy.gives_up_on(NonRetryableError("no"), 1)
    assert policy.gives_up_on(EffectOutcomeUnknown("k", "w"), 1)
    assert not policy.gives_up_on(ValueError("v"), 1)


def test_retry_policy_rejects_inverted_intervals() -> None:
    with pytest.raises(ValidationError):
        RetryPolicy(initial_interval=timedelta(minutes=10), max_interval=timedelta(minutes=1))
