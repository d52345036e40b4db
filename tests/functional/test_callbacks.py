"""Scoped callback tokens over HTTP: the success and failure answers, and every refusal — each a 403
with its own code that writes nothing (no inbox item, no signal message).

The API handler gets the HTTP API v2 events API Gateway sends to the unauthenticated callback
routes, over a ``LocalRuntime`` (moto) whose workers run the job.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from aetheris.callbacks import Grant
from aetheris.testing import LocalRuntime
from tests.functional.callback_jobs import (
    Mailbox,
    answer,
    build_app,
    call,
    forge,
    refuse,
    running,
    written,
)


@pytest.fixture
def mailbox() -> Mailbox:
    return Mailbox()


@pytest.fixture
def local(mailbox: Mailbox) -> Iterator[LocalRuntime]:
    with running(build_app(mailbox)) as stack:
        yield stack


def waiting(local: LocalRuntime, job_type: str = "approve", pause: int = 0) -> str:
    job_id = local.start(job_type, pause)
    local.run_until_idle()
    return job_id


def grant_of(token: str) -> Grant:
    import base64

    payload = token.split(".")[2]
    return Grant.model_validate_json(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def test_callback_answered_with_a_payload_wakes_the_wait_with_it(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    assert local.get(job_id).status == "WAITING"

    status, body = answer(mailbox.token, {"approved": True, "by": "ana"})
    local.run_until_idle()

    assert (status, body) == (202, {"job_id": job_id, "signal_id": "callback/0.0"})
    job = local.get(job_id)
    assert job.status == "COMPLETED"
    assert job.result == {"answer": {"approved": True, "by": "ana"}, "replayed_token": mailbox.token}
    assert mailbox.calls["mail"] == 1


def test_callback_answered_with_a_failure_raises_callback_failed_in_the_job(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)

    status, _ = refuse(mailbox.token, {"code": "rejected", "message": "not this month"})
    local.run_until_idle()

    assert status == 202
    assert local.get(job_id).result == {"failed": ["rejected", "not this month"]}


def test_the_same_answer_twice_gets_the_first_outcome_and_is_consumed_once(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    first = answer(mailbox.token, {"approved": True})
    again = answer(mailbox.token, {"approved": True})
    assert written(local, job_id)[0] == 1
    local.run_until_idle()
    after_the_end = answer(mailbox.token, {"approved": True})

    assert first == again == after_the_end == (202, {"job_id": job_id, "signal_id": "callback/0.0"})
    consumed = [e for e in local.events(job_id) if e.type == "SignalConsumed"]
    assert len(consumed) == 1 and local.get(job_id).status == "COMPLETED"


def test_another_answer_after_the_first_is_callback_used_and_writes_nothing(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    assert answer(mailbox.token, {"approved": True})[0] == 202
    before = written(local, job_id)

    other = answer(mailbox.token, {"approved": False})
    failure = refuse(mailbox.token, {"message": "changed my mind"})

    assert other[0] == failure[0] == 403
    assert other[1]["error"]["code"] == failure[1]["error"]["code"] == "callback_used"
    assert written(local, job_id) == before
    local.run_until_idle()
    assert local.get(job_id).result["answer"] == {"approved": True}


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("not-a-token", "callback_malformed"),
        ("v1.k1.!!!.???", "callback_malformed"),
        ("v2.k1.e30.e30", "callback_malformed"),
        ("", "callback_malformed"),
    ],
)
def test_a_string_that_is_not_a_token_is_callback_malformed(
    local: LocalRuntime, mailbox: Mailbox, token: str, code: str
) -> None:
    job_id = waiting(local)
    before = written(local, job_id)
    status, body = answer(token, {"approved": True}) if token else call("POST", "/callbacks/succeed", {})
    assert (status, body["error"]["code"]) == (403, code)
    assert written(local, job_id) == before


def test_a_tampered_token_or_one_signed_by_a_key_we_do_not_hold_is_callback_invalid(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    version, kid, payload, signature = mailbox.token.split(".")
    # Another job's id in the payload, the signature kept: the signature no longer matches.
    other = grant_of(mailbox.token).model_copy(update={"j": "someone-elses-job"})
    forged_payload = forge(other).split(".")[2]
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    cases = {
        "payload swapped": f"{version}.{kid}.{forged_payload}.{signature}",
        "signature flipped": f"{version}.{kid}.{payload}.{flipped}",
        "unknown kid": forge(grant_of(mailbox.token), kid="k9"),
        "right kid, wrong key": forge(grant_of(mailbox.token), key="another-key-0123456789-0123456789-x"),
    }
    before = written(local, job_id)

    codes = {name: answer(token, {"approved": True}) for name, token in cases.items()}

    assert {name: (s, b["error"]["code"]) for name, (s, b) in codes.items()} == {
        name: (403, "callback_invalid") for name in cases
    }
    assert written(local, job_id) == before
    assert local.get(job_id).status == "WAITING"


def test_a_token_for_a_job_that_is_not_there_or_of_another_tenant_is_callback_wrong_job(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    grant = grant_of(mailbox.token)
    cases = {
        "no such job": forge(grant.model_copy(update={"j": "no-such-job"})),
        "another tenant": forge(grant.model_copy(update={"t": "globex"})),
    }
    before = written(local, job_id)
    codes = {name: answer(token, {"n": 1}) for name, token in cases.items()}
    assert {n: (s, b["error"]["code"]) for n, (s, b) in codes.items()} == {
        n: (403, "callback_wrong_job") for n in cases
    }
    assert written(local, job_id) == before


def test_a_token_for_a_wait_the_log_does_not_hold_is_callback_wrong_wait(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    grant = grant_of(mailbox.token)
    cases = {
        "another value index": forge(grant.model_copy(update={"w": "0.1"})),
        "another expiry": forge(grant.model_copy(update={"e": grant.e + 60})),
        "another name": forge(grant.model_copy(update={"n": "payment"})),
    }
    before = written(local, job_id)
    codes = {name: answer(token, {"n": 1}) for name, token in cases.items()}
    assert {n: (s, b["error"]["code"]) for n, (s, b) in codes.items()} == {
        n: (403, "callback_wrong_wait") for n in cases
    }
    assert written(local, job_id) == before


def test_a_token_past_its_expiry_is_callback_expired_and_once_the_wait_timed_out_callback_closed(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    before = written(local, job_id)

    local.advance(timedelta(hours=1, seconds=1))  # the wait's timeout tick is due, not yet run
    expired = answer(mailbox.token, {"approved": True})
    local.run_until_idle()
    closed = answer(mailbox.token, {"approved": True})

    assert (expired[0], expired[1]["error"]["code"]) == (403, "callback_expired")
    assert (closed[0], closed[1]["error"]["code"]) == (403, "callback_closed")
    assert written(local, job_id) == before
    assert local.get(job_id).result == {"timed_out": True}


def test_a_token_of_a_job_that_finished_without_waiting_is_callback_closed(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local, "forgets")
    assert local.get(job_id).status == "COMPLETED"
    status, body = answer(mailbox.token, {"approved": True})
    assert (status, body["error"]["code"]) == (403, "callback_closed")
    assert written(local, job_id)[0] == 0


def test_the_token_may_come_in_the_query_for_senders_that_cannot_set_headers(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    status, body = call("POST", f"/callbacks/succeed?token={mailbox.token}", {"via": "query"})
    local.run_until_idle()
    assert (status, body["job_id"]) == (202, job_id)
    assert local.get(job_id).result["answer"] == {"via": "query"}


def test_a_failure_body_that_does_not_fit_is_a_422_and_writes_nothing(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    job_id = waiting(local)
    before = written(local, job_id)
    status, body = call("POST", "/callbacks/fail", {"error": {"code": "has space"}}, mailbox.token)
    assert (status, body["error"]["code"]) == (422, "validation_error")
    assert written(local, job_id) == before


def test_the_sample_event_of_the_route_answers_once_it_carries_a_real_token(
    local: LocalRuntime, mailbox: Mailbox
) -> None:
    import json
    from pathlib import Path

    from aetheris.handlers.api import handler
    from aetheris_infra.lambda_events import LocalLambdaContext

    job_id = waiting(local)
    event = json.loads((Path(__file__).parents[2] / "events" / "api_callback_succeed.json").read_text())
    as_sent = handler(json.loads(json.dumps(event)), LocalLambdaContext(function_name="aetheris-api"))
    event["headers"]["authorization"] = f"Callback {mailbox.token}"
    answered = handler(event, LocalLambdaContext(function_name="aetheris-api"))
    local.run_until_idle()

    assert (
        as_sent["statusCode"] == 403 and json.loads(as_sent["body"])["error"]["code"] == "callback_malformed"
    )
    assert answered["statusCode"] == 202, answered
    assert local.get(job_id).result["answer"] == {"approved": True, "comment": "ok from the e-mail link"}
