"""``GET /observability/summary`` and ``GET /observability/stuck`` over real HTTP (the local bridge),
on a ``LocalRuntime``: counts that match the jobs started, a dead-lettered tick in the DLQ depth and
the stuck list, a killed worker's job found stuck with its evidence, a signal wait never listed,
and a summary whose requests do not grow with the number of finished jobs.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from aetheris import App, JobContext, hosting
from aetheris.testing import LocalRuntime
from aetheris_infra.http_bridge import serve
from api.app import handler
from tests.functional.jobs import Calls, build_app
from tests.functional.test_sweeper import counting, deliver_one, purge_step_queue

QUEUES = {"step", "step_dlq", "signal", "signal_dlq"}


@dataclass
class Api:
    local: LocalRuntime
    url: str

    def get(self, path: str) -> tuple[int, Any]:
        request = urllib.request.Request(self.url + path, headers={"accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def ok(self, path: str) -> Any:
        status, body = self.get(path)
        assert status == 200, body
        return body


def obs_app(calls: Calls) -> App:
    app = build_app(calls)

    @app.job("approval")
    def approval(ctx: JobContext, _: None) -> Any:
        return ctx.wait_for_signal("approval")

    @app.job("nap")
    def nap(ctx: JobContext, seconds: int) -> str:
        ctx.sleep(timedelta(seconds=seconds))
        return "rested"

    return app


@pytest.fixture
def api() -> Iterator[Api]:
    with LocalRuntime(obs_app(Calls())) as local, serve(handler) as bridge:
        hosting.use(local.runtimes[0])
        try:
            yield Api(local, bridge.url)
        finally:
            hosting.use(None)


def test_observability_summary_counts_match_the_jobs_started(api: Api) -> None:
    local = api.local
    done = [local.start("five_steps", 1) for _ in range(3)]
    for job_id in done:
        local.wait(job_id)
    waiting = [local.start("approval") for _ in range(2)]
    sleeping = local.start("nap", 3600)
    local.run_until_idle()
    local.clock.advance(timedelta(seconds=30))
    pending = local.start("five_steps", 1)  # its first tick is still on the queue

    summary = api.ok("/observability/summary")
    local.clock.advance(timedelta(hours=2))
    later = api.ok("/observability/summary")

    assert set(summary) == {
        "generated_at",
        "jobs",
        "finished_last_hour",
        "oldest_age_seconds",
        "queues",
        "stuck",
        "capped",
    }
    assert summary["jobs"] == {"PENDING": 1, "RUNNING": 0, "WAITING": 2, "SLEEPING": 1, "COMPENSATING": 0}
    assert summary["finished_last_hour"] == {"COMPLETED": 3, "FAILED": 0, "CANCELLED": 0}
    ages = summary["oldest_age_seconds"]
    assert ages["PENDING"] == 0 and ages["RUNNING"] is None and ages["WAITING"] == ages["SLEEPING"] == 30
    assert set(summary["queues"]) == QUEUES
    assert summary["queues"]["step"] == {"visible": 1, "in_flight": 0, "delayed": 0}, f"{pending}'s tick"
    assert summary["queues"]["step_dlq"]["visible"] == 0
    assert summary["stuck"] == 0 and summary["capped"] == []
    assert later["finished_last_hour"] == {"COMPLETED": 0, "FAILED": 0, "CANCELLED": 0}
    assert later["oldest_age_seconds"]["WAITING"] == 30 + 7200
    assert {*waiting, sleeping} and later["jobs"]["WAITING"] == 2


def test_observability_summary_requests_do_not_grow_with_finished_jobs(api: Api) -> None:
    local = api.local
    local.wait(local.start("five_steps", 1))
    local.clock.advance(timedelta(hours=2))
    with counting(local) as few:
        api.ok("/observability/summary")
    for job_id in [local.start("five_steps", 1) for _ in range(12)]:
        local.wait(job_id)
    local.clock.advance(timedelta(hours=2))
    with counting(local) as many:
        api.ok("/observability/summary")

    assert many == few, "13 finished jobs cost what 1 did: none of them is read"
    assert sum(many.values()) == 5 + 3 + 4 + 4 + local.settings.sweep_shards + 2


def test_observability_stuck_finds_a_killed_worker_and_not_a_job_parked_on_a_signal(api: Api) -> None:
    local = api.local
    parked = local.start("approval")
    local.run_until_idle()
    killed = local.start("payment", {"order_id": "o-7", "amount": 3})
    local.crash_at("before_commit")
    assert deliver_one(local).crashed is not None
    purge_step_queue(local)  # its message lost too: only the sweeper can move it now
    local.clock.advance(local.settings.lease + timedelta(seconds=10))
    early = api.ok("/observability/stuck")
    local.clock.advance(local.settings.stall_after)
    report = api.ok("/observability/stuck")
    summary = api.ok("/observability/summary")
    local.sweep()
    local.wait(killed)
    after = api.ok("/observability/stuck")

    assert early["jobs"] == [], "a lease just expired is not stuck yet (stall_after)"
    assert report["threshold_seconds"] == local.settings.stall_after.total_seconds()
    (stuck,) = report["jobs"]
    assert (stuck["job_id"], stuck["job_type"], stuck["status"]) == (killed, "payment", "PENDING")
    assert stuck["reason"] == "lease_expired"
    evidence = stuck["evidence"]
    assert (evidence["worker_id"], evidence["fence"]) == ("local-worker-1", 1)
    assert evidence["abandoned_claims"] == 1
    assert (evidence["last_seq"], evidence["last_event"]) == (0, "JobCreated")
    assert evidence["lease_until"] == stuck["since"] and evidence["last_claim_at"] is not None
    assert parked not in [job["job_id"] for job in report["jobs"]]
    assert summary["stuck"] == 1
    assert after["jobs"] == [], "rescued: the job completed"


def test_observability_dead_lettered_tick_shows_in_the_dlq_depth_and_the_stuck_list(api: Api) -> None:
    local = api.local
    job_id = local.start("five_steps", 1)
    purge_step_queue(local)
    # A tick no worker can read: refused on every receive, then moved to the DLQ by SQS.
    body = json.dumps({"job_id": job_id, "seq": 1, "unexpected": True})
    local.sqs.send_message(QueueUrl=local.stack.step_queue_url, MessageBody=body)
    local.run_until_idle()

    summary = api.ok("/observability/summary")
    report = api.ok("/observability/stuck")
    again = api.ok("/observability/summary")

    assert summary["queues"]["step_dlq"] == {"visible": 1, "in_flight": 0, "delayed": 0}
    assert summary["queues"]["step"]["visible"] == 0
    (stuck,) = report["jobs"]
    assert (stuck["job_id"], stuck["reason"], stuck["status"]) == (job_id, "dead_lettered", "PENDING")
    (letter,) = stuck["evidence"]["dead_letters"]
    assert letter["receive_count"] >= 10 and letter["seq"] == 1
    assert again["queues"]["step_dlq"]["visible"] == 1, "peeking consumed nothing"


def test_observability_dead_lettered_signal_makes_its_waiting_job_stuck(api: Api) -> None:
    local = api.local
    job_id = local.start("approval")
    local.run_until_idle()
    message = {"job_id": job_id, "name": "approval", "signal_id": "s-1", "payload": None, "sent_at_ms": 0}
    local.sqs.send_message(QueueUrl=local.stack.signal_dlq_url, MessageBody=json.dumps(message))

    report = api.ok("/observability/stuck")

    (stuck,) = report["jobs"]
    assert (stuck["job_id"], stuck["reason"], stuck["status"]) == (job_id, "signal_dead_lettered", "WAITING")
    assert stuck["evidence"]["dead_letters"][0]["signal"] == "approval"


@pytest.mark.parametrize("threshold", ["-1", "abc", "nan", "inf", "1e400", "99999999999"])
def test_observability_stuck_bad_threshold_is_a_400(api: Api, threshold: str) -> None:
    status, body = api.get(f"/observability/stuck?threshold_seconds={threshold}")

    assert status == 400 and body["error"]["code"] == "invalid_parameter", body


def test_observability_stuck_threshold_zero_lists_a_job_as_soon_as_it_is_late(api: Api) -> None:
    local = api.local
    job_id = local.start("five_steps", 1)
    purge_step_queue(local)
    local.clock.advance(local.settings.stall_after + timedelta(seconds=1))

    default = api.ok("/observability/stuck")
    patient = api.ok("/observability/stuck?threshold_seconds=3600")

    assert [(j["job_id"], j["reason"]) for j in default["jobs"]] == [(job_id, "tick_lost")]
    assert patient == {"threshold_seconds": 3600.0, "jobs": []}


def test_observability_routes_are_in_the_openapi_document(api: Api) -> None:
    spec = api.ok("/openapi.json")
    summary = spec["paths"]["/observability/summary"]["get"]
    stuck = spec["paths"]["/observability/stuck"]["get"]

    ok = summary["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Summary"}
    assert {"Summary", "QueueDepth", "StuckReport", "StuckJob", "StuckEvidence"} <= set(
        spec["components"]["schemas"]
    )
    assert [p["name"] for p in stuck["parameters"]] == ["threshold_seconds"]
    assert Counter(spec["components"]["schemas"]["StuckJob"]["required"]) == Counter(
        ["job_id", "job_type", "status", "reason", "since", "evidence"]
    )
