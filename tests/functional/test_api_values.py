"""The API accepts only values the runtime can store and read back, and a 202 only for a signal that
ingest can store: over real HTTP (the local bridge, the API handler), a ``LocalRuntime`` on moto
behind it, the real signal-ingest and worker handlers on their SQS queues.

Every refusal is a 4xx with its code and nothing started or queued; every acceptance ends with the
value read back unchanged — a job's result, or the payload the waiting job received.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, PayloadTooLarge, hosting
from aetheris._values import MAX_DEPTH
from aetheris.handlers.api import MAX_BODY_BYTES
from aetheris.testing import LocalRuntime
from aetheris_infra.http_bridge import serve
from api.app import handler
from tests.functional.test_api import Api, error_code


def values_app() -> App:
    app = App("values")

    @app.job("echo")
    def echo(ctx: JobContext, value: Any) -> Any:
        return value

    @app.job("reply")
    def reply(ctx: JobContext, _: None) -> Any:
        return ctx.wait_for_signal("reply")

    @app.job("two")
    def two(ctx: JobContext, _: None) -> Any:
        return [ctx.wait_for_signal("first"), ctx.wait_for_signal("second")]

    return app


@contextmanager
def running(**overrides: Any) -> Iterator[Api]:
    with LocalRuntime(values_app(), overrides=overrides) as local, serve(handler) as bridge:
        hosting.use(local.runtimes[0])
        try:
            yield Api(local, bridge.url)
        finally:
            hosting.use(None)


@pytest.fixture
def api() -> Iterator[Api]:
    with running() as started:
        yield started


@pytest.fixture
def api_without_bucket() -> Iterator[Api]:
    with running(payload_bucket=None) as started:
        yield started


def raw(body: str) -> bytes:
    return body.encode("utf-8")  # as a client sends it: UTF-8, non-ASCII unescaped


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def parked(api: Api, job_type: str) -> str:
    job_id = api.start(job_type)
    api.local.run_until_idle()
    return job_id


def signal_messages(api: Api) -> int:
    attributes = api.local.sqs.get_queue_attributes(
        QueueUrl=api.local.settings.signal_queue_url, AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


UNSTORABLE = [
    pytest.param(f'{{"items": [1, {nested(MAX_DEPTH)}]}}', "nested deeper", id="nesting_past_the_limit"),
    pytest.param(nested(210), "nested deeper", id="nesting_past_the_jiter_reader"),
    pytest.param(nested(5000), "nested deeper", id="nesting_past_pythons_reader"),
    pytest.param('{"price": 1e400}', "price: inf is not a finite number", id="float_overflowing_to_inf"),
    pytest.param('{"n": ' + "7" * 5000 + "}", "integer of 5000 digits", id="integer_of_5000_digits"),
    pytest.param('{"name": "ok\\ud800"}', "name: a string holding a lone surrogate", id="lone_surrogate"),
    pytest.param('{"\\udfff": 1}', "a key holding a lone surrogate", id="lone_surrogate_in_a_key"),
]


@pytest.mark.parametrize(("value", "named"), UNSTORABLE)
def test_api_start_with_unstorable_input_is_422_invalid_value_naming_it_and_starts_nothing(
    api: Api, value: str, named: str
) -> None:
    status, _, body = api.call("POST", "/jobs", raw=raw(f'{{"job_type": "echo", "input": {value}}}'))

    assert (status, error_code(body)) == (422, "invalid_value")
    assert named in body["error"]["message"]
    assert api.call("GET", "/jobs")[2]["jobs"] == []


@pytest.mark.parametrize(("value", "named"), UNSTORABLE)
def test_api_signal_with_unstorable_payload_is_422_invalid_value_and_nothing_is_queued(
    api: Api, value: str, named: str
) -> None:
    job_id = parked(api, "reply")

    status, _, body = api.call("POST", f"/jobs/{job_id}/signals/reply", raw=raw(f'{{"payload": {value}}}'))

    assert (status, error_code(body)) == (422, "invalid_value")
    assert named in body["error"]["message"]
    assert signal_messages(api) == 0


def test_api_start_input_error_names_the_path_inside_the_value(api: Api) -> None:
    body = '{"job_type": "echo", "input": {"items": [{}, {}, {}, {"price": 1e400}]}}'
    status, _, answer = api.call("POST", "/jobs", raw=raw(body))
    assert (status, error_code(answer)) == (422, "invalid_value")
    assert answer["error"]["message"].startswith("input.items[3].price: inf is not a finite number")


def test_api_start_nan_literal_is_400_malformed_json(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs", raw=raw('{"job_type": "echo", "input": NaN}'))
    assert (status, error_code(body)) == (400, "malformed_json")


def test_api_start_lone_surrogate_in_the_idempotency_key_is_422_invalid_value(api: Api) -> None:
    body = '{"job_type": "echo", "input": 1, "idempotency_key": "k\\ud800"}'
    status, _, answer = api.call("POST", "/jobs", raw=raw(body))
    assert (status, error_code(answer)) == (422, "invalid_value")


def test_api_start_value_at_every_limit_is_stored_and_read_back_unchanged(api: Api) -> None:
    value = {"deep": json.loads(nested(MAX_DEPTH - 1)), "n": -int("9" * 640), "x": 1.7976931348623157e308}
    job_id = api.start("echo", value)
    api.local.wait(job_id)

    assert api.call("GET", f"/jobs/{job_id}")[2]["result"] == value


def non_ascii_body(size: int) -> str:
    """A start request of exactly ``size`` UTF-8 bytes whose input is non-ASCII text."""
    envelope = '{"job_type": "echo", "input": ""}'
    chars, odd = divmod(size - len(envelope), 2)
    return envelope[:-2] + "é" * chars + "x" * odd + '"}'


def test_api_start_non_ascii_body_just_under_the_limit_is_201_and_reads_back(api: Api) -> None:
    body = non_ascii_body(MAX_BODY_BYTES)
    assert len(body.encode()) == MAX_BODY_BYTES and len(json.dumps(json.loads(body))) > 2 * MAX_BODY_BYTES

    status, _, started = api.call("POST", "/jobs", raw=raw(body))
    api.local.wait(started["job_id"])

    assert status == 201
    assert api.call("GET", f"/jobs/{started['job_id']}")[2]["result"] == json.loads(body)["input"]


def test_api_start_non_ascii_body_just_over_the_limit_is_413_payload_too_large(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs", raw=raw(non_ascii_body(MAX_BODY_BYTES + 1)))
    assert (status, error_code(body)) == (413, "payload_too_large")


# -- a 202 only for a signal that ingest can store -------------------------------------------------


def test_signal_non_ascii_payload_without_a_bucket_reaches_the_waiting_job(api_without_bucket: Api) -> None:
    api = api_without_bucket
    job_id = parked(api, "reply")
    payload = "é" * 120_000  # 240 KB as UTF-8; 720 KB once ASCII-escaped: over the 400 KB item
    status, _, _ = api.call("POST", f"/jobs/{job_id}/signals/reply", raw=raw(f'{{"payload": "{payload}"}}'))
    api.local.run_until_idle()
    _, _, job = api.call("GET", f"/jobs/{job_id}")

    assert status == 202
    assert (job["status"], job["result"]) == ("COMPLETED", payload)


def test_signal_non_ascii_payload_over_the_inline_cap_without_a_bucket_is_refused(
    api_without_bucket: Api,
) -> None:
    api = api_without_bucket
    job_id = parked(api, "reply")
    payload = "é" * (MAX_BODY_BYTES // 2)

    with pytest.raises(PayloadTooLarge, match="payload is 262146 bytes serialized; the limit is 262144"):
        api.local.signal(job_id, "reply", payload)

    assert signal_messages(api) == 0


def test_signal_nested_past_the_reader_is_refused_and_one_at_the_limit_reaches_the_job(api: Api) -> None:
    job_id = parked(api, "reply")
    too_deep = api.call("POST", f"/jobs/{job_id}/signals/reply", raw=raw(f'{{"payload": {nested(210)}}}'))
    deepest = json.loads(nested(MAX_DEPTH))
    accepted = api.call("POST", f"/jobs/{job_id}/signals/reply", {"payload": deepest})
    api.local.run_until_idle()
    _, _, job = api.call("GET", f"/jobs/{job_id}")

    assert (too_deep[0], error_code(too_deep[2])) == (422, "invalid_value")
    assert accepted[0] == 202
    assert (job["status"], job["result"]) == ("COMPLETED", deepest)


def test_signal_id_reused_for_another_name_is_409_and_the_first_signal_is_delivered(api: Api) -> None:
    job_id = parked(api, "two")
    first = api.call("POST", f"/jobs/{job_id}/signals/first", {"payload": "a", "signal_id": "s-1"})
    reused = api.call("POST", f"/jobs/{job_id}/signals/second", {"payload": "b", "signal_id": "s-1"})
    fresh = api.call("POST", f"/jobs/{job_id}/signals/second", {"payload": "b", "signal_id": "s-2"})
    api.local.run_until_idle()
    _, _, job = api.call("GET", f"/jobs/{job_id}")

    assert first[0] == fresh[0] == 202
    assert (reused[0], error_code(reused[2])) == (409, "signal_id_conflict")
    assert "'first'" in reused[2]["error"]["message"]
    assert (job["status"], job["result"]) == ("COMPLETED", ["a", "b"])


def test_signal_id_reused_before_ingest_ran_is_409_never_202_then_lost(api: Api) -> None:
    # Both sends happen before the signal-ingest handler ran once: the inbox still decides.
    job_id = parked(api, "two")
    second = api.call("POST", f"/jobs/{job_id}/signals/second", {"payload": "b", "signal_id": "same"})
    first = api.call("POST", f"/jobs/{job_id}/signals/first", {"payload": "a", "signal_id": "same"})
    api.call("POST", f"/jobs/{job_id}/signals/first", {"payload": "a", "signal_id": "other"})
    api.local.run_until_idle()
    _, _, job = api.call("GET", f"/jobs/{job_id}")

    assert second[0] == 202
    assert (first[0], error_code(first[2])) == (409, "signal_id_conflict")
    assert (job["status"], job["result"]) == ("COMPLETED", ["a", "b"])  # "second" was kept for its wait


def test_signal_id_reused_with_another_payload_is_409_and_a_true_retry_is_202(api: Api) -> None:
    job_id = parked(api, "reply")
    first = api.call("POST", f"/jobs/{job_id}/signals/reply", {"payload": {"ok": True}, "signal_id": "r"})
    retry = api.call("POST", f"/jobs/{job_id}/signals/reply", {"payload": {"ok": True}, "signal_id": "r"})
    other = api.call("POST", f"/jobs/{job_id}/signals/reply", {"payload": {"ok": False}, "signal_id": "r"})
    api.local.run_until_idle()

    assert first[0] == retry[0] == 202
    assert (other[0], error_code(other[2])) == (409, "signal_id_conflict")
    assert api.call("GET", f"/jobs/{job_id}")[2]["result"] == {"ok": True}


def test_signal_ingest_drops_a_message_whose_id_another_signal_holds(api: Api) -> None:
    # A message of a refused sender (or of an older API) reaches ingest: dropped, never retried.
    job_id = parked(api, "two")
    api.call("POST", f"/jobs/{job_id}/signals/first", {"payload": "a", "signal_id": "s-1"})
    api.local.run_until_idle()
    stray = {"job_id": job_id, "name": "second", "signal_id": "s-1", "payload": "b", "sent_at_ms": 1}

    outcome = api.local.runtimes[0].ingest_signal(json.dumps(stray))
    events = api.local.events(job_id)
    consumed = [e.detail["signal_id"] for e in events if e.type is EventType.SIGNAL_CONSUMED]

    assert outcome == "conflict"
    assert consumed == ["s-1"]


def test_signal_payload_under_the_cap_whose_message_passes_sqs_classic_limit_is_refused_before_sending(
    api_without_bucket: Api,
) -> None:
    api = api_without_bucket
    job_id = parked(api, "reply")
    payload = "x" * (256 * 1024 - 10)  # its JSON fits the 256 KiB value cap; with the envelope it does not

    with pytest.raises(PayloadTooLarge, match="signal message"):
        api.local.signal(job_id, "reply", payload)

    assert signal_messages(api) == 0
    assert api.call("GET", f"/jobs/{job_id}")[2]["status"] == "WAITING"
