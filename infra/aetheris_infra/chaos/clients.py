"""The driver's client calls (start, signal, cancel), as a client would make them: retried over
transient errors, and each answer classified.

An answer is *accepted*, *refused* (the runtime raised a clear, non-transient error before it
stored anything: an ``AetherisError`` or a ``ValueError``/``TypeError`` — what the HTTP API turns
into a 4xx), *finished* (``JobFinished``), or a *server error* (anything else, e.g. DynamoDB
refusing an item it was asked to store — what the API would answer with a 500). Transient errors
(the injected throttling and 5xx answers that outlasted the client's retries, a dropped
connection) are retried up to ``CLIENT_TRIES`` times.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from aetheris import AetherisError, JobFinished

CLIENT_TRIES = 20  # a client (start, signal, cancel) tries this often before the run gives up on it
TRANSIENT_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestThrottled",
    "InternalServerError",
    "InternalError",
    "ServiceUnavailable",
}
Verdict = Literal["accepted", "refused", "finished", "server_error", "gave_up"]
T = TypeVar("T")


@dataclass
class Answer:
    verdict: Verdict
    value: Any = None
    error: str | None = None  # "Type: message" (the message cut to 300 characters)

    @property
    def accepted(self) -> bool:
        return self.verdict == "accepted"


@dataclass
class CancelSend:
    """One cancel the driver asked for (``moment`` from the job's plan) and its answer."""

    job_index: int
    job_id: str
    moment: str
    at_t: float = 0.0  # wall clock (epoch seconds) when the answer came
    verdict: str = ""
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def transient(error: BaseException) -> bool:
    if isinstance(error, BotoCoreError):
        return True
    return isinstance(error, ClientError) and error.response.get("Error", {}).get("Code") in TRANSIENT_CODES


def describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {str(error)[:300]}"


def call(action: Callable[[], T]) -> Answer:
    """Run one client action with the client's retries; classify how it ended."""
    for attempt in range(CLIENT_TRIES):
        try:
            return Answer("accepted", action())
        except JobFinished as finished:
            return Answer("finished", error=describe(finished))
        except (AetherisError, ValueError, TypeError) as refused:
            return Answer("refused", error=describe(refused))
        except Exception as error:  # noqa: BLE001 - transient: try again; anything else: a 500
            if not transient(error):
                return Answer("server_error", error=describe(error))
            time.sleep(0.05 * (attempt + 1))
    return Answer("gave_up", error="injected errors outlasted every client try")
