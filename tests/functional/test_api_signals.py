"""Signal, cancel and trace over real HTTP: the local bridge in front of the API handler, a
``LocalRuntime`` behind it (moto, the real worker and signal-ingest handlers on their SQS queues).

Jobs are parked on signals with ``run_until_idle``; a signal's 202 is checked against the signal
queue itself, and what a job did is read back through ``GET /jobs/{job_id}/trace``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, EventType, JobContext, RetryPolicy, StepContext
from tests.functional.jobs import Calls, build_app
from tests.functional.test_api import Api, error_code, running_api


def control_app(calls: Calls) -> App:
    app = App("control")

    @app.job("approve")
    def approve(ctx: JobContext, _: None) -> Any:
        return ctx.wait_for_signal("approval")

    @app.job("collect")
    def collect(ctx: JobContext, _: None) -> list[Any]:
        return [ctx.wait_for_signal("item"), ctx.wait_for_signal("item")]

    @app.job("quick")
    def quick(ctx: JobContext, _: None) -> str:
        return "done"

    gateway = {"failures_left": 1}

    def charge_api(order_id: str, key: str) -> str:
        number = calls.effect("charge", key)
        if gateway["failures_left"] > 0:
            gateway["failures_left"] -= 1
            raise ConnectionError("gateway reset the connection")
        return f"ch_{order_id}_{number}"

    def charge(sctx: StepContext, order_id: str) -> str:
        calls.step("charge")
        return sctx.tool("payments.charge", charge_api, order_id, sctx.idempotency_key("payments.charge"))

    @app.job("refund")
    def refund(ctx: JobContext, order_id: str) -> str:
        charge_id = ctx.step(charge, order_id, retry=RetryPolicy(initial_interval=timedelta(0)))
        approval = ctx.wait_for_signal("approval")
        return f"{charge_id} approved by {approval['by']}"

    def reserve(sctx: StepContext, item: str) -> str:
        calls.step("reserve")
        return f"held {item}"

    def release(sctx: StepContext, item: str) -> str:
        calls.step("release")
        return f"released {item}"

    @app.job("saga")
    def saga(ctx: JobContext, item: str) -> Any:
        ctx.step(reserve, item, compensate=release)
        return ctx.wait_for_signal("go")

    return app


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def api(calls: Calls) -> Iterator[Api]:
    with running_api(control_app(calls)) as running:
        yield running


def parked(api: Api, job_type: str, input: Any = None) -> str:
    """A job started over HTTP and run until it parks."""
    job_id = api.start(job_type, input)
    api.local.run_until_idle()
    return job_id


def status_of(api: Api, job_id: str) -> str:
    return str(api.call("GET", f"/jobs/{job_id}")[2]["status"])


# -- signals ----------------------------------------------------------------------------------------


def test_api_signal_to_waiting_job_is_202_on_the_queue_and_completes_it_with_the_payload(api: Api) -> None:
    job_id = parked(api, "approve")
    assert status_of(api, job_id) == "WAITING"

    status, _, body = api.call("POST", f"/jobs/{job_id}/signals/approval", {"payload": {"ok": True}})
    on_queue = api.local.sources[-1].poll_once().deleted  # the signal-ingest handler, before any worker
    api.local.run_until_idle()
    _, _, job = api.call("GET", f"/jobs/{job_id}")
    consumed = [e for e in api.local.events(job_id) if e.type is EventType.SIGNAL_CONSUMED]

    assert status == 202 and set(body) == {"signal_id"} and body["signal_id"]
    assert on_queue == 1
    assert (job["status"], job["result"]) == ("COMPLETED", {"ok": True})
    assert [e.detail["signal_id"] for e in consumed] == [body["signal_id"]]


def test_api_signal_without_body_delivers_a_null_payload(api: Api) -> None:
    job_id = parked(api, "approve")

    status, _, _ = api.call("POST", f"/jobs/{job_id}/signals/approval")
    api.local.run_until_idle()

    assert status == 202
    assert api.call("GET", f"/jobs/{job_id}")[2]["result"] is None
    assert status_of(api, job_id) == "COMPLETED"


def test_api_signal_same_client_signal_id_twice_is_202_twice_and_consumed_once(api: Api) -> None:
    job_id = parked(api, "collect")
    request = {"payload": 1, "signal_id": "item-1"}

    first = api.call("POST", f"/jobs/{job_id}/signals/item", request)
    second = api.call("POST", f"/jobs/{job_id}/signals/item", request)
    api.local.run_until_idle()
    after_duplicates = status_of(api, job_id)
    api.call("POST", f"/jobs/{job_id}/signals/item", {"payload": 2, "signal_id": "item-2"})
    api.local.run_until_idle()
    _, _, job = api.call("GET", f"/jobs/{job_id}")
    consumed = [
        e.detail["signal_id"] for e in api.local.events(job_id) if e.type is EventType.SIGNAL_CONSUMED
    ]

    assert (first[0], first[2]) == (second[0], second[2]) == (202, {"signal_id": "item-1"})
    assert after_duplicates == "WAITING", "the duplicate must not satisfy the second wait"
    assert (job["status"], job["result"]) == ("COMPLETED", [1, 2])
    assert consumed == ["item-1", "item-2"]


def test_api_signal_to_unknown_job_is_404_job_not_found(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs/no-such-job/signals/approval", {"payload": 1})
    assert (status, error_code(body)) == (404, "job_not_found")


def test_api_signal_to_finished_job_is_409_job_finished_and_not_queued(api: Api) -> None:
    job_id = api.start("quick")
    api.local.wait(job_id)

    status, _, body = api.call("POST", f"/jobs/{job_id}/signals/approval", {"payload": 1})

    assert (status, error_code(body)) == (409, "job_finished")
    assert "COMPLETED" in body["error"]["message"]
    assert api.local.sources[-1].poll_once().received == 0


def test_api_retried_signal_after_the_job_finished_gets_the_original_202(api: Api) -> None:
    job_id = parked(api, "approve")
    request = {"payload": {"ok": True}, "signal_id": "approval-1"}
    api.call("POST", f"/jobs/{job_id}/signals/approval", request)
    api.local.run_until_idle()
    assert status_of(api, job_id) == "COMPLETED"

    retried = api.call("POST", f"/jobs/{job_id}/signals/approval", request)
    other = api.call("POST", f"/jobs/{job_id}/signals/approval", {**request, "signal_id": "approval-2"})

    assert (retried[0], retried[2]) == (202, {"signal_id": "approval-1"})
    assert api.local.sources[-1].poll_once().received == 0, "the retry is answered, not queued again"
    assert (other[0], error_code(other[2])) == (409, "job_finished")


@pytest.mark.parametrize(
    ("name", "body", "raw", "expected"),
    [
        pytest.param("bad%20name", {"payload": 1}, None, (400, "invalid_parameter"), id="name_with_a_space"),
        pytest.param("n" * 101, {"payload": 1}, None, (400, "invalid_parameter"), id="name_over_100"),
        pytest.param(
            "approval", {"payload": 1, "extra": 2}, None, (422, "validation_error"), id="unknown_field"
        ),
        pytest.param("approval", {"signal_id": ""}, None, (422, "validation_error"), id="empty_signal_id"),
        pytest.param(
            "approval", {"signal_id": "s" * 129}, None, (422, "validation_error"), id="long_signal_id"
        ),
        pytest.param("approval", None, b'{"payload": ', (400, "malformed_json"), id="malformed_json"),
        pytest.param(
            "approval",
            {"payload": "x" * (256 * 1024)},
            None,
            (413, "payload_too_large"),
            id="payload_too_large",
        ),
    ],
)
def test_api_bad_signal_gets_its_4xx_and_nothing_is_queued(
    api: Api, name: str, body: Any, raw: bytes | None, expected: tuple[int, str]
) -> None:
    job_id = parked(api, "approve")

    status, _, answer = api.call("POST", f"/jobs/{job_id}/signals/{name}", body, raw=raw)

    assert (status, error_code(answer)) == expected
    assert api.local.sources[-1].poll_once().received == 0
    assert status_of(api, job_id) == "WAITING"


# -- cancel -----------------------------------------------------------------------------------------


def test_api_cancel_waiting_job_is_200_then_cancelled_and_repeats_are_200(api: Api) -> None:
    job_id = parked(api, "approve")

    first_status, _, first = api.call("POST", f"/jobs/{job_id}/cancel")
    again_status, _, again = api.call("POST", f"/jobs/{job_id}/cancel")
    api.local.run_until_idle()
    after_status, _, after = api.call("POST", f"/jobs/{job_id}/cancel")

    assert first_status == again_status == after_status == 200
    assert first["status"] == "WAITING" and first["cancel_requested_at"]
    assert again["cancel_requested_at"] == first["cancel_requested_at"]
    assert (after["status"], after["cancel_requested_at"]) == ("CANCELLED", first["cancel_requested_at"])
    assert status_of(api, job_id) == "CANCELLED"


def test_api_cancel_completed_job_is_409_job_finished(api: Api) -> None:
    job_id = api.start("quick")
    api.local.wait(job_id)

    status, _, body = api.call("POST", f"/jobs/{job_id}/cancel")

    assert (status, error_code(body)) == (409, "job_finished")
    assert status_of(api, job_id) == "COMPLETED"


def test_api_cancel_unknown_job_is_404_job_not_found(api: Api) -> None:
    status, _, body = api.call("POST", "/jobs/no-such-job/cancel")
    assert (status, error_code(body)) == (404, "job_not_found")


# -- trace ------------------------------------------------------------------------------------------


def test_api_trace_shows_retried_attempts_the_effect_key_and_claims_and_the_signal(
    api: Api, calls: Calls
) -> None:
    job_id = parked(api, "refund", "o-9")
    api.call("POST", f"/jobs/{job_id}/signals/approval", {"payload": {"by": "ana"}, "signal_id": "appr-1"})
    api.local.run_until_idle()

    status, _, trace = api.call("GET", f"/jobs/{job_id}/trace")

    assert status == 200
    assert (trace["status"], trace["result"]) == ("COMPLETED", "ch_o-9_2 approved by ana")
    charge, wait, end = trace["operations"]
    assert [(op["kind"], op["name"], op["state"]) for op in trace["operations"]] == [
        ("step", "charge", "committed"),
        ("wait", "approval", "signalled"),
        ("end", "end", "completed"),
    ]
    failed, committed = charge["attempts"]
    assert (failed["attempt"], failed["outcome"], committed["attempt"], committed["outcome"]) == (
        1,
        "failed",
        2,
        "committed",
    )
    assert failed["error"]["type"] == "builtins.ConnectionError"
    assert failed["error"]["message"] == "gateway reset the connection"
    assert failed["next_attempt_at"] and committed["next_attempt_at"] is None
    assert all(
        a["worker_id"] and a["fence"] == 1 and a["duration_ms"] is not None for a in charge["attempts"]
    )
    key = f"{job_id}:0-charge:payments.charge:0"
    (effect,) = charge["effects"]
    assert (effect["idempotency_key"], effect["claims"], effect["state"]) == (key, 2, "RECORDED")
    assert (effect["semantics"], effect["result"]) == ("AT_LEAST_ONCE", "ch_o-9_2")
    assert calls.keys["charge"] == [key, key]
    assert charge["step_id"] == "0-charge" and charge["result"] == "ch_o-9_2"
    assert wait["signal"]["name"] == "approval" and wait["signal"]["signal_id"] == "appr-1"
    assert wait["signal"]["payload"] == {"by": "ana"} and wait["wait"]["parked_at"]
    assert end["result"] == "ch_o-9_2 approved by ana"
    assert trace["totals"] == {
        "operations": 3,
        "attempts": 2,
        "failed_attempts": 1,
        "retries": 1,
        "takeovers": 0,
        "effects": 1,
        "effect_claims": 2,
        "signals": 1,
        "compensations": 0,
    }


def test_api_trace_of_a_worker_crash_shows_the_takeover_and_the_second_claim() -> None:
    calls = Calls()
    with running_api(build_app(calls)) as api:
        api.local.crash_at("after_effect")  # the charge was made, its result never recorded
        job_id = api.start("payment", {"order_id": "o-1", "amount": 30})
        api.local.wait(job_id)
        _, _, trace = api.call("GET", f"/jobs/{job_id}/trace")

    charge = trace["operations"][0]
    crashed, attempt = charge["attempts"]
    (effect,) = charge["effects"]
    assert (attempt["outcome"], attempt["fence"]) == ("committed", 2)
    assert attempt["reclaimed_from"] in {"local-worker-1", "local-worker-2"}
    assert (crashed["outcome"], crashed["fence"], crashed["worker_id"]) == (
        "crashed",
        1,
        attempt["reclaimed_from"],
    )
    assert crashed["ended_because"] == f"lease expired, taken over by {attempt['worker_id']}"
    assert (effect["claims"], effect["state"]) == (2, "RECORDED")
    assert trace["totals"]["takeovers"] == 1
    assert calls.effects["charge"] == 2


def test_api_trace_of_a_cancelled_saga_links_the_compensation_to_its_step(api: Api, calls: Calls) -> None:
    job_id = parked(api, "saga", "seat-4")
    api.call("POST", f"/jobs/{job_id}/cancel")
    api.local.run_until_idle()

    _, _, trace = api.call("GET", f"/jobs/{job_id}/trace")

    kinds = [(op["index"], op["kind"], op["name"]) for op in trace["operations"]]
    assert kinds == [
        (0, "step", "reserve"),
        (1, "wait", "go"),
        (2, "compensate", "undo-reserve"),
        (3, "end", "end"),
    ]
    reserve, _, undo, end = trace["operations"]
    assert (reserve["compensated_by"], undo["compensates"]) == (2, 0)
    assert (undo["state"], undo["result"], end["state"]) == ("committed", "released seat-4", "cancelled")
    assert trace["status"] == "CANCELLED" and trace["compensated"] == ["undo-reserve"]
    assert trace["cancel_requested_at"] and trace["totals"]["compensations"] == 1
    assert calls.steps == {"reserve": 1, "release": 1}


def test_api_trace_cuts_values_over_max_value_bytes_to_a_preview(api: Api) -> None:
    job_id = parked(api, "approve")
    api.call("POST", f"/jobs/{job_id}/signals/approval", {"payload": {"note": "y" * 100}})
    api.local.run_until_idle()

    _, _, cut = api.call("GET", f"/jobs/{job_id}/trace?max_value_bytes=20")
    _, _, whole = api.call("GET", f"/jobs/{job_id}/trace")

    payload = cut["operations"][0]["signal"]["payload"]
    assert payload["truncated"] is True and payload["bytes"] > 100
    assert payload["preview"].startswith('{"note":"yyy')  # the stored text: compact JSON
    assert whole["operations"][0]["signal"]["payload"] == {"note": "y" * 100}


def test_api_trace_of_a_parked_job_shows_the_open_wait(api: Api) -> None:
    job_id = parked(api, "approve")

    _, _, trace = api.call("GET", f"/jobs/{job_id}/trace")

    (wait,) = trace["operations"]
    assert (trace["status"], trace["waiting_for"]) == ("WAITING", "approval")
    assert (wait["state"], wait["ended_at"], wait["signal"]) == ("waiting", None, None)
    assert wait["wait"]["signal"] == "approval" and wait["wait"]["deadline"] is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/jobs/no-such-job/trace", (404, "job_not_found"), id="unknown_job"),
        pytest.param("/jobs/any/trace?max_value_bytes=-1", (400, "invalid_parameter"), id="negative_limit"),
    ],
)
def test_api_bad_trace_request_gets_its_4xx(api: Api, path: str, expected: tuple[int, str]) -> None:
    status, _, body = api.call("GET", path)
    assert (status, error_code(body)) == expected


# -- the spec ---------------------------------------------------------------------------------------


def test_api_openapi_json_lists_signal_cancel_and_trace(api: Api) -> None:
    _, _, spec = api.call("GET", "/openapi.json")
    paths = spec["paths"]

    signal = paths["/jobs/{job_id}/signals/{name}"]["post"]
    assert {"202", "400", "404", "409", "413", "422", "500"} <= set(signal["responses"])
    assert "200" not in signal["responses"]
    assert set(paths["/jobs/{job_id}/cancel"]) == {"post"}
    assert {"200", "404", "409"} <= set(paths["/jobs/{job_id}/cancel"]["post"]["responses"])
    assert set(paths["/jobs/{job_id}/trace"]) == {"get"}
    assert {"SignalRequest", "SignalAccepted", "Trace", "Operation", "Attempt", "Effect"} <= set(
        spec["components"]["schemas"]
    )
