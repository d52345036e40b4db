"""The worker Lambda handler on the sample SQS event (events/sqs_step_tick.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aetheris import EventType, hosting
from aetheris.testing import LocalRuntime
from aetheris_infra.lambda_events import LocalLambdaContext
from tests.functional.jobs import Calls, build_app
from worker.app import handler

EVENT = Path(__file__).parents[2] / "events" / "sqs_step_tick.json"


def sample_event(job_id: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(EVENT.read_text())
    event["Records"][0]["body"] = json.dumps({"job_id": job_id, "seq": 1})
    return event


def test_worker_handler_sample_event_advances_job_and_fails_only_the_malformed_record() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("five_steps", 1)
        with hosting.bound(local.runtimes[0]):
            answer = handler(sample_event(job_id), LocalLambdaContext())
        events = local.events(job_id)

    bad = json.loads(EVENT.read_text())["Records"][1]["messageId"]
    assert answer == {"batchItemFailures": [{"itemIdentifier": bad}]}
    assert calls.steps["s1"] == 1
    assert [e.type for e in events] == [EventType.JOB_CREATED, EventType.STEP_COMMITTED]


def test_worker_handler_tick_for_unknown_job_is_acknowledged() -> None:
    with LocalRuntime(build_app(Calls())) as local, hosting.bound(local.runtimes[0]):
        event = sample_event("no-such-job")
        event["Records"] = event["Records"][:1]
        assert handler(event, LocalLambdaContext()) == {"batchItemFailures": []}


def test_worker_handler_stale_tick_is_acknowledged_without_running_anything() -> None:
    calls = Calls()
    with LocalRuntime(build_app(calls)) as local:
        job_id = local.start("five_steps", 1)
        local.wait(job_id)
        event = sample_event(job_id)
        event["Records"] = event["Records"][:1]
        with hosting.bound(local.runtimes[1]):
            assert handler(event, LocalLambdaContext()) == {"batchItemFailures": []}
        events = local.events(job_id)

    assert calls.steps["s1"] == 1
    assert events[-1].type is EventType.JOB_COMPLETED
