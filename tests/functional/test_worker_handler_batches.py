"""The worker handler's batch answers on the sample SQS event (events/sqs_step_tick.json): a deferred
record is a batch item failure, never an invocation error; log lines and EMF carry the tick."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from aetheris import hosting
from aetheris._clock import to_millis
from aetheris.handlers import worker as worker_module
from aetheris.testing import LocalRuntime
from aetheris_infra.lambda_events import LocalLambdaContext
from tests.functional.jobs import Calls, build_app
from worker import app as worker_app

EVENT = Path(__file__).parents[2] / "events" / "sqs_step_tick.json"


def one_record(job_id: str, receive_count: int) -> tuple[dict[str, Any], str]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    record = event["Records"][0]
    record["body"] = json.dumps({"job_id": job_id, "seq": 1})
    record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
    event["Records"] = [record]
    return event, record["messageId"]


def hold_first_slot(local: LocalRuntime, job_id: str) -> None:
    """Another worker claims slot 1 with a live lease (it may have died: only its lease says)."""
    now = to_millis(local.clock.now())
    local.runtimes[1].services.log.claim(job_id, 1, "worker-elsewhere", now, now + 60_000)


def test_worker_handler_deferred_only_batch_reports_the_record_without_raising() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("five_steps", 1)
        hold_first_slot(local, job_id)
        event, message_id = one_record(job_id, receive_count=2)  # a redelivery: deferred, not dropped
        with hosting.bound(local.runtimes[0]):
            answer = worker_app.handler(event, LocalLambdaContext())

    assert answer == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert calls.steps["s1"] == 0


def test_worker_handler_batch_of_only_malformed_records_is_still_an_invocation_error() -> None:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event["Records"] = event["Records"][1:]  # "this is not a tick"
    with (
        LocalRuntime(build_app(Calls())) as local,
        hosting.bound(local.runtimes[0]),
        pytest.raises(BatchProcessingError),
    ):
        worker_app.handler(event, LocalLambdaContext())


def test_worker_handler_deferred_and_malformed_records_are_both_reported() -> None:
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", 1)
        hold_first_slot(local, job_id)
        event, deferred_id = one_record(job_id, receive_count=3)
        malformed = json.loads(EVENT.read_text())["Records"][1]
        event["Records"].append(malformed)
        with hosting.bound(local.runtimes[0]):
            answer = worker_app.handler(event, LocalLambdaContext())

    reported = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    assert reported == {deferred_id, malformed["messageId"]}


def emf_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def test_worker_handler_deferred_tick_emits_emf_for_the_outcome_and_the_lease_conflict(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with LocalRuntime(build_app(Calls())) as local:
        job_id = local.start("five_steps", 1)
        hold_first_slot(local, job_id)
        event, _ = one_record(job_id, receive_count=2)
        capsys.readouterr()
        with hosting.bound(local.runtimes[0]):
            worker_app.handler(event, LocalLambdaContext())
    documents = emf_lines(capsys.readouterr().out)

    (document,) = [d for d in documents if "Tick_deferred" in d]
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Aetheris"
    assert directive["Dimensions"] == [["service"]] and document["service"] == "worker"
    assert {m["Name"] for m in directive["Metrics"]} == {"Tick_deferred", "LeaseConflicts"}
    assert (document["Tick_deferred"], document["LeaseConflicts"]) == ([1.0], [1.0])


def test_worker_handler_log_lines_of_a_record_carry_job_id_seq_and_worker_id(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = io.StringIO()
    handler = worker_module.logger.registered_handler
    monkeypatch.setattr(handler, "stream", stream)
    worker_module.logger.setLevel("INFO")
    try:
        with LocalRuntime(build_app(Calls())) as local:
            job_id = local.start("five_steps", 1)
            hold_first_slot(local, job_id)
            event, message_id = one_record(job_id, receive_count=2)
            with hosting.bound(local.runtimes[0]):
                worker_app.handler(event, LocalLambdaContext())
            worker_id = local.runtimes[0].worker_id
    finally:
        worker_module.logger.setLevel("WARNING")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]

    (deferred,) = [line for line in lines if line["message"].startswith("tick deferred")]
    assert (deferred["job_id"], deferred["seq"], deferred["worker_id"]) == (job_id, 1, worker_id)
    assert deferred["message_id"] == message_id
    assert "job_id" not in worker_module.logger.thread_safe_get_current_keys()  # removed after the record
