"""Fault sources inside a chaos worker process: a botocore hook and the runtime's named crash points.

``FaultInjector`` attaches to a boto3 client's event system:

* ``before-send``: a call may start a *burst* — its first ``k`` attempts are answered with a
  throttling or 5xx error without reaching the server (DynamoDB ``ProvisionedThroughputExceeded``,
  ``ThrottlingException``, ``InternalServerError``, ``ServiceUnavailable``; SQS ``InternalError``,
  ``ServiceUnavailable``, ``ThrottlingException``). A burst as long as the client's attempts surfaces
  to the runtime as a ``ClientError``.
* ``needs-retry``: it replaces botocore's retry handler with one that retries throttling, 5xx and
  connection errors after 10-40 ms (botocore's own would sleep up to a second per throttle, so the
  run would measure sleeps), and it can *lose a response*: a write that was applied is sent again,
  as after a 500 that came back too late — for SQS a duplicate message, for DynamoDB a conditional
  write that now finds its own result.

Every injected fault is one line in the run's fault log. The random source is seeded per process.

``CrashPlan`` / ``ChaosFaults`` arm one of the runtime's named crash points (``Faults``): the
``after``-th time this process reaches ``point`` it logs the hit and ends itself with ``os._exit``,
from whichever thread got there — no cleanup, no acknowledgement, no lease release, like SIGKILL.
"""

from __future__ import annotations

import json
import os
import random
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.awsrequest import AWSResponse
from botocore.compat import HTTPHeaders

from aetheris._engine.faults import Faults
from aetheris_infra.chaos.config import FaultRates
from aetheris_infra.chaos.jsonl import JsonLines

if TYPE_CHECKING:
    from collections.abc import Iterator

    from aetheris._engine.faults import CrashPoint

CRASH_EXIT_CODE = 86  # a worker that died at an armed crash point exits with this

_ERRORS: dict[str, list[tuple[str, int]]] = {
    "dynamodb": [
        ("ProvisionedThroughputExceededException", 400),
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
        ("ServiceUnavailable", 503),
    ],
    "sqs": [("InternalError", 500), ("ServiceUnavailable", 503), ("ThrottlingException", 400)],
}
_JSON_TYPE_PREFIX = {"dynamodb": "com.amazonaws.dynamodb.v20120810#", "sqs": "com.amazonaws.sqs#"}
_THROTTLING = {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestThrottled"}
_WRITES = {"UpdateItem", "PutItem", "DeleteItem", "TransactWriteItems", "SendMessage", "SendMessageBatch"}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


class FaultInjector:
    """Seeded fault injection for the boto3 clients of one process (see the module docstring)."""

    def __init__(self, rates: FaultRates, seed: int, log: JsonLines, who: str) -> None:
        self.rates = rates
        self.log = log
        self.who = who
        self.injected = 0
        self._random = random.Random(seed)
        self._bursts: dict[str, int] = {}  # invocation id → attempts to fail
        self._lock = threading.Lock()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        events = client.meta.events
        events.unregister(f"needs-retry.{service}", unique_id=f"retry-config-{service}")
        events.register(f"needs-retry.{service}", self._needs_retry, unique_id=f"chaos-retry-{service}")
        events.register(f"before-send.{service}", self._before_send, unique_id=f"chaos-send-{service}")

    # -- injected error answers ------------------------------------------------------------------

    def _rate(self, service: str, operation: str) -> float:
        if service == "dynamodb":
            return self.rates.dynamodb
        if operation in ("SendMessage", "SendMessageBatch"):
            return self.rates.sqs_send
        return self.rates.sqs_other

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        service, operation = _service_and_operation(request)
        if service not in _ERRORS:
            return None
        invocation, attempt = _attempt_of(request)
        with self._lock:
            if attempt == 1:
                burst = 0
                if self._random.random() < self._rate(service, operation):
                    surfaces = self._random.random() < self.rates.surfacing
                    top = self.rates.max_attempts - 1
                    burst = self.rates.max_attempts if surfaces or top < 1 else self._random.randint(1, top)
                if burst:
                    self._bursts[invocation] = burst
            burst = self._bursts.get(invocation, 0)
            if attempt > burst:
                self._bursts.pop(invocation, None)
                return None
            code, status = self._random.choice(_ERRORS[service])
            self.injected += 1
        surfaced = attempt >= self.rates.max_attempts
        kind = "throttle" if code in _THROTTLING else "5xx"
        self._record(f"{service}_{kind}", operation, code=code, attempt=attempt, surfaced=surfaced)
        body = {"__type": _JSON_TYPE_PREFIX[service] + code, "message": f"injected by chaos ({self.who})"}
        headers = {"content-type": "application/x-amz-json-1.0", "x-amzn-requestid": f"chaos-{invocation}"}
        if service == "sqs":
            headers["x-amzn-query-error"] = f"{code};Receiver"
        return AWSResponse(
            request.url, status, HTTPHeaders.from_dict(headers), _Body(json.dumps(body).encode())
        )

    # -- retries, and lost answers ---------------------------------------------------------------

    def _needs_retry(
        self, response: Any, attempts: int, caught_exception: BaseException | None, operation: Any, **_: Any
    ) -> float | None:
        if attempts >= self.rates.max_attempts:
            return None
        delay = 0.01 * attempts + 0.02 * self._unit()
        if caught_exception is not None:
            return delay  # the connection failed (a busy server's backlog): try again
        if response is None:
            return None
        http, parsed = response
        code = parsed.get("Error", {}).get("Code")
        if http.status_code >= 500 or code in _THROTTLING or code in ("ThrottlingException",):
            return delay
        if http.status_code == 200 and attempts == 1 and operation.name in _WRITES:
            service = operation.service_model.service_id.hyphenize()
            rate = self.rates.sqs_lost_response if service == "sqs" else self.rates.dynamodb_lost_response
            with self._lock:
                lost = self._random.random() < rate
                self.injected += lost
            if lost:
                self._record(f"{service}_lost_response", operation.name, attempt=attempts, surfaced=False)
                return delay
        return None

    def _unit(self) -> float:
        with self._lock:
            return self._random.random()

    def _record(self, kind: str, operation: str, **detail: Any) -> None:
        self.log.append({"kind": kind, "op": operation, "who": self.who, "pid": os.getpid(), **detail})


def _service_and_operation(request: Any) -> tuple[str, str]:
    target = str(request.headers.get("X-Amz-Target", b"") or "")
    if isinstance(request.headers.get("X-Amz-Target"), bytes):
        target = request.headers["X-Amz-Target"].decode()
    prefix, _, operation = target.partition(".")
    if prefix.startswith("DynamoDB"):
        return "dynamodb", operation
    if prefix.startswith("AmazonSQS"):
        return "sqs", operation
    return "", operation


def _attempt_of(request: Any) -> tuple[str, int]:
    headers = request.headers
    invocation = _text(headers.get("amz-sdk-invocation-id", ""))
    attempt = 1
    for part in _text(headers.get("amz-sdk-request", "")).split(";"):
        name, _, value = part.strip().partition("=")
        if name == "attempt" and value.isdigit():
            attempt = int(value)
    return invocation, attempt


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True)
class CrashPlan:
    """Die the ``after``-th time ``point`` is reached; ``point=None``: never."""

    point: CrashPoint | None = None
    after: int = 1


class ChaosFaults(Faults):
    """The runtime's crash points, armed by a ``CrashPlan``: a hit ends the process at once."""

    def __init__(self, plan: CrashPlan, log: JsonLines, who: str) -> None:
        super().__init__()
        self.plan = plan
        self.log = log
        self.who = who
        self._reached = 0
        self._count_lock = threading.Lock()

    def reach(self, point: CrashPoint) -> None:
        super().reach(point)
        if point != self.plan.point:
            return
        with self._count_lock:
            self._reached += 1
            hit = self._reached == self.plan.after
        if hit:
            self.log.append({"kind": "crash_point", "point": point, "who": self.who, "pid": os.getpid()})
            os._exit(CRASH_EXIT_CODE)
