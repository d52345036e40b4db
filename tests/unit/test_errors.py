"""Errors survive being stored in the log and re-raised on replay."""

from __future__ import annotations

import pytest

from aetheris import (
    EffectOutcomeUnknown,
    ErrorInfo,
    NondeterminismError,
    PayloadCorrupted,
    PayloadTooLarge,
    StepFailedError,
)
from aetheris.errors import rebuild_error


class CustomNeedsTwo(Exception):
    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}/{b}")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        ConnectionError("reset"),
        EffectOutcomeUnknown("job:0-s:pay:0", "worker-1"),
        NondeterminismError("job", 3, "step 'a'", "step 'b'"),
        PayloadTooLarge("result of step s1", 3 << 20, 2 << 20),
        PayloadCorrupted("bucket", "job/abc.json", "no object"),
    ],
)
def test_error_info_round_trip_keeps_type_and_message(error: Exception) -> None:
    stored = ErrorInfo.model_validate_json(ErrorInfo.of(error).model_dump_json())
    rebuilt = rebuild_error(stored)
    assert type(rebuilt) is type(error)
    assert str(rebuilt) == str(error)


def test_error_info_unrebuildable_class_becomes_step_failed_error() -> None:
    stored = ErrorInfo(type="no.such.module.Boom", message="kaboom")
    rebuilt = rebuild_error(stored)
    assert isinstance(rebuilt, StepFailedError)
    assert rebuilt.error_type == "no.such.module.Boom" and "kaboom" in str(rebuilt)


def test_error_info_marks_non_retryable_errors() -> None:
    assert ErrorInfo.of(EffectOutcomeUnknown("k")).retryable is False
    assert ErrorInfo.of(ValueError("v")).retryable is True


def test_nondeterminism_error_names_job_position_recorded_and_requested() -> None:
    message = str(NondeterminismError("job-7", 2, "step 'charge'", "step 'refund'"))
    assert "job-7" in message and "operation 2" in message
    assert "step 'charge'" in message and "step 'refund'" in message
