"""Retention: a finished job's every item (job, log, ledger, inbox) gets ``expires_at`` so that
DynamoDB's TTL removes the whole job; a live job keeps none. moto never deletes expired items, so
the tests read the TTL attribute itself and compare it with the fake clock."""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from aetheris import App, EventType, JobContext, JobStatus, NonRetryableError, StepContext
from aetheris._store import schema
from aetheris._store.retention import Retention
from aetheris.testing import LocalRuntime

RETENTION = timedelta(days=30)  # Settings' default, which LocalRuntime uses
ENDINGS = (EventType.JOB_COMPLETED, EventType.JOB_FAILED, EventType.JOB_CANCELLED)


def retention_app() -> App:
    app = App("retention")

    def charge(sctx: StepContext, amount: int) -> str:
        return sctx.tool("payments.charge", lambda: f"ch-{amount}")

    @app.job("approved_charge")
    def approved_charge(ctx: JobContext, amount: int) -> str:
        approval = ctx.wait_for_signal("approval")
        if not approval["approved"]:
            raise NonRetryableError("refused")
        return ctx.step(charge, amount)

    return app


def items(local: LocalRuntime, job_id: str) -> list[dict[str, Any]]:
    """Every item of the job in both tables, as stored."""
    found = []
    for table in (local.stack.jobs_table, local.stack.inbox_table):
        answer = local.dynamodb.query(
            TableName=table,
            KeyConditionExpression="pk = :job",
            ExpressionAttributeValues={":job": {"S": job_id}},
            ConsistentRead=True,
        )
        found += [{"table": table, **item} for item in answer["Items"]]
    return found


def expiry(item: dict[str, Any]) -> int | None:
    value = item.get(schema.TTL_ATTRIBUTE)
    return None if value is None else int(value["N"])


def ended_at_plus_retention(local: LocalRuntime, job_id: str) -> int:
    (end,) = [e for e in local.events(job_id) if e.type in ENDINGS]
    return int((end.at + RETENTION).timestamp())


def kinds(found: list[dict[str, Any]]) -> set[str]:
    return {item["sk"]["S"][:3] if item["table"].endswith("JobsTable") else "inbox" for item in found}


@pytest.mark.parametrize(
    ("approval", "cancel", "status"),
    [
        pytest.param({"approved": True}, False, JobStatus.COMPLETED, id="completed"),
        pytest.param({"approved": False}, False, JobStatus.FAILED, id="failed"),
        pytest.param(None, True, JobStatus.CANCELLED, id="cancelled"),
    ],
)
def test_retention_finished_job_every_item_of_both_tables_expires_after_retention(
    approval: dict[str, bool] | None, cancel: bool, status: JobStatus
) -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "unrelated", "kept in the inbox, never consumed")
        if cancel:
            local.cancel(job_id)
        else:
            local.signal(job_id, "approval", approval)
        view = local.wait(job_id)
        local.clock.advance(timedelta(hours=1))  # the TTL is the end's time + retention, not now's
        found = items(local, job_id)
        expected = ended_at_plus_retention(local, job_id)

    assert view.status is status
    assert {"EV#", "EW#", "inbox"} <= kinds(found)
    if status is JobStatus.COMPLETED:
        assert "FX#" in kinds(found)  # the charge's ledger entry
    assert [expiry(item) for item in found] == [expected] * len(found)
    (job,) = [i for i in found if i["sk"]["S"] == schema.JOB_SK]
    assert schema.DUE_INDEX_PK not in job, "the pass completed: the job is off the by-due index"


def test_retention_waiting_job_has_no_expiry_on_any_item() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "unrelated", 1)
        local.run_until_idle()
        found = items(local, job_id)
        status = local.get(job_id).status

    assert status is JobStatus.WAITING
    assert {"EV#", "EW#", "inbox"} <= kinds(found)
    assert [expiry(item) for item in found] == [None] * len(found)


def test_retention_running_job_between_steps_has_no_expiry() -> None:
    app = App("running")

    def one(sctx: StepContext) -> int:
        return sctx.tool("one", lambda: 1)

    @app.job("two")
    def two(ctx: JobContext, _: None) -> int:
        return ctx.step(one) + ctx.step(one)

    with LocalRuntime(app, workers=1) as local:
        job_id = local.start("two", None)
        source = local.sources[0]
        while local.get(job_id).status is not JobStatus.RUNNING:
            assert source.poll_once().received, "the job should be ticked until it runs"
        found = items(local, job_id)

    assert "FX#" in kinds(found)
    assert [expiry(item) for item in found] == [None] * len(found)


def test_retention_worker_dies_before_the_pass_sweeper_completes_it() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.crash_at("before_retention")
        local.signal(job_id, "approval", {"approved": True})
        local.run_until_idle()
        before = items(local, job_id)
        expected = ended_at_plus_retention(local, job_id)
        local.clock.advance(local.settings.stall_after + timedelta(seconds=1))
        repaired = local.sweep()
        after = items(local, job_id)
        again = local.sweep()
        status = local.get(job_id).status

    assert local.crashes and status is JobStatus.COMPLETED
    assert repaired["expired"] == [job_id]
    job_before = next(i for i in before if i["sk"]["S"] == schema.JOB_SK)
    assert expiry(job_before) == expected, "the terminal commit itself gives the job item its TTL"
    assert schema.DUE_INDEX_PK in job_before, "and leaves it on the by-due index until the pass is done"
    assert None in [expiry(item) for item in before]
    assert [expiry(item) for item in after] == [expected] * len(after)
    assert again["examined"] == 0, "a completed pass takes the job off the by-due index"


def test_retention_store_error_in_the_pass_is_logged_and_the_tick_still_succeeds(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def throttled(self: Retention, job_id: str, at: int) -> None:
        raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException"}}, "Query")

    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, "aetheris.worker"):
            patch.setattr(Retention, "expire", throttled)
            local.signal(job_id, "approval", {"approved": True})
            local.run_until_idle()
        finished = local.get(job_id).status
        local.advance(local.settings.stall_after + timedelta(seconds=1))
        found = items(local, job_id)
        expected = ended_at_plus_retention(local, job_id)

    assert finished is JobStatus.COMPLETED and not local.crashes
    assert f"retention pass for job {job_id} failed" in caplog.text
    assert [expiry(item) for item in found] == [expected] * len(found)


def test_retention_signal_landing_after_the_job_ended_expires_with_it() -> None:
    with LocalRuntime(retention_app()) as local:
        job_id = local.start("approved_charge", 12)
        local.run_until_idle()
        local.signal(job_id, "approval", {"approved": True})
        local.wait(job_id)
        late = json.dumps({"job_id": job_id, "name": "late", "signal_id": "s-late", "sent_at_ms": 0})
        outcome = local.runtimes[0].ingest_signal(late)
        found = items(local, job_id)
        now = local.clock.now()

    (stored,) = [i for i in found if i["sk"]["S"] == "s-late"]
    assert outcome == "job_finished"
    assert expiry(stored) == int((now + RETENTION).timestamp())


def test_retention_settings_read_days_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from aetheris.config import Settings

    monkeypatch.setenv("AETHERIS_RETENTION_DAYS", "7")

    assert Settings.from_env().retention == timedelta(days=7)
    assert Settings(retention=timedelta(hours=36)).retention == timedelta(hours=36)
    monkeypatch.setenv("AETHERIS_RETENTION_DAYS", "0")
    with pytest.raises(ValueError, match="greater than"):
        Settings.from_env()
