"""End to end against a deployed stack (opt-in): ``AETHERIS_E2E_STACK=<stack> pytest -m e2e tests/e2e``.

Skipped unless ``AETHERIS_E2E_STACK`` names a stack and real AWS credentials resolve. Everything
goes through the stack's HTTP API, as a client would: the example support agent is started, waits
for a human approval, is approved with a signal and runs to completion on the deployed workers.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

import pytest

from tests.e2e.deployed import DeployedApi, Stack, real_session

STACK_NAME = os.environ.get("AETHERIS_E2E_STACK", "")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not STACK_NAME, reason="set AETHERIS_E2E_STACK to a deployed stack's name"),
]

JOB_TYPE = "support.refund"
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED"}


def refund_request() -> dict[str, Any]:
    """$129 of broken headphones: over the agent's $100 threshold, so it waits for an approval."""
    return {
        "ticket_id": f"T-e2e-{uuid.uuid4().hex[:8]}",
        "customer_id": "cus-42",
        "order_id": "ord-1001",
        "message": "My headphones arrived broken. I would like a refund.",
        "follow_up_after_seconds": 5,  # the deployed job completes in the test's time, not in 3 days
    }


@pytest.fixture(scope="module")
def api(real_aws_environment: dict[str, str | None]) -> DeployedApi:
    session = real_session(real_aws_environment)
    if session is None:
        pytest.skip("no real AWS credentials resolve (environment keys, AWS_PROFILE or the default profile)")
    return DeployedApi(session, Stack.describe(session, STACK_NAME))


def start(api: DeployedApi, key: str | None = None) -> str:
    body: dict[str, Any] = {"job_type": JOB_TYPE, "input": refund_request()}
    if key is not None:
        body["idempotency_key"] = key
    answer = api.call("POST", "/jobs", body)
    assert answer.status == 201, answer
    return str(answer.body["job_id"])


def waiting_for_approval(job: dict[str, Any]) -> bool:
    return job["status"] == "WAITING" or job["status"] in TERMINAL


def test_support_agent_waits_for_approval_then_completes(api: DeployedApi) -> None:
    job_id = start(api)

    parked = api.poll(job_id, waiting_for_approval)
    assert (parked["status"], parked["waiting_for"]) == ("WAITING", "approval"), parked
    signal = api.call(
        "POST", f"/jobs/{job_id}/signals/approval", {"payload": {"approved": True, "by": "e2e"}}
    )
    assert signal.status == 202 and signal.body["signal_id"], signal
    done = api.poll(job_id, lambda job: job["status"] in TERMINAL)
    events = api.call("GET", f"/jobs/{job_id}/events")

    assert done["status"] == "COMPLETED", done
    assert (done["result"]["status"], done["result"]["reviewed_by"]) == ("refunded", "e2e")
    assert events.status == 200
    types = [event["type"] for event in events.body["events"]]
    assert types[0] == "JobCreated" and types[-1] == "JobCompleted"
    assert {"WaitStarted", "SignalConsumed", "TimerStarted", "TimerFired"} <= set(types)
    steps = [e["name"] for e in events.body["events"] if e["type"] == "StepCommitted"]
    assert {"issue_refund", "reply", "follow_up"} <= set(steps)


def test_start_with_the_same_idempotency_key_returns_the_same_job(api: DeployedApi) -> None:
    key = f"e2e-{uuid.uuid4()}"
    body = {"job_type": JOB_TYPE, "input": refund_request(), "idempotency_key": key}

    first = api.call("POST", "/jobs", body)
    again = api.call("POST", "/jobs", body)

    assert (first.status, again.status) == (201, 200), (first, again)
    assert again.body["job_id"] == first.body["job_id"]
    api.call("POST", f"/jobs/{first.body['job_id']}/cancel")  # leave nothing waiting behind


def test_unknown_job_is_404_job_not_found(api: DeployedApi) -> None:
    answer = api.call("GET", f"/jobs/{uuid.uuid4()}")

    assert answer.status == 404
    assert answer.body["error"]["code"] == "job_not_found"


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        pytest.param(b"{not json", 400, id="not-json"),
        pytest.param(b'{"input": {}}', 422, id="no-job-type"),
    ],
)
def test_malformed_start_is_refused_with_a_4xx_error_body(api: DeployedApi, raw: bytes, status: int) -> None:
    answer = api.call("POST", "/jobs", raw=raw)

    assert answer.status == status, answer
    assert answer.body["error"]["code"]


def test_cancel_of_a_waiting_job_ends_it_cancelled(api: DeployedApi) -> None:
    job_id = start(api)
    parked = api.poll(job_id, waiting_for_approval)
    assert parked["status"] == "WAITING", parked

    cancel = api.call("POST", f"/jobs/{job_id}/cancel")
    ended = api.poll(job_id, lambda job: job["status"] in TERMINAL)
    events = api.call("GET", f"/jobs/{job_id}/events")

    assert cancel.status == 200, cancel
    assert ended["status"] == "CANCELLED", ended
    assert [e["type"] for e in events.body["events"]][-1] == "JobCancelled"
